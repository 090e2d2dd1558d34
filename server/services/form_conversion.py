"""Running ``forms.convert.convert_upload`` off the request thread, in a child process with a time limit.

pyxform is quadratic on big repeats (docs/reference/xlsform.md §1.7: one corpus form takes 20+ s), so a
conversion runs in a child process that is killed when ``FORM_CONVERT_TIMEOUT`` passes; the web worker
stays responsive and the admin gets a ``conversion_timeout`` that says how long was allowed. Children
are forked from a ``forkserver`` that has pyxform preloaded, and are kept warm: each server process
keeps up to ``WARM_WORKERS`` idle converters (started lazily, on the first upload), so a small form
costs a round trip through a pipe, not a process start. One idle for ``IDLE_SECONDS`` is stopped, and
with the last one the forkserver: a web worker that converted a form once does not keep ~90 MiB of
helpers for the rest of its life. A converter that times out or dies is killed
and forgotten; one that has converted ``MAX_USES`` forms is retired (pyxform's caches and the
allocator's arenas only grow). Tests may set ``FORM_CONVERT_INLINE`` to convert in-process (the
timeout path and the warm workers are tested with real processes).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from forms.convert import ConvertedForm, convert_upload
from forms.errors import FormError
from forms.schema import FormSchema
from server import metrics

DEFAULT_TIMEOUT_SECONDS = 60.0
WARM_WORKERS = 1
# A warm converter left idle this long is stopped, and with the last one the forkserver and resource
# tracker behind it: about 90 MiB (PSS) per web worker that ever converted a form, measured (the
# converter ~54, the forkserver with pyxform loaded ~29, the tracker ~8). The next upload after that
# waits for the forkserver to start again (about half a second).
IDLE_SECONDS = 120.0
MAX_USES = 100
_context: Any = None


class ConversionTimeout(Exception):
    """The conversion did not finish within the limit (the child was killed)."""

    def __init__(self, limit_seconds: float, elapsed_seconds: float) -> None:
        super().__init__(f"conversion exceeded {limit_seconds} s")
        self.limit_seconds = limit_seconds
        self.elapsed_seconds = elapsed_seconds


@dataclass(frozen=True)
class TimedConversion:
    """A converted form and how long the conversion took."""

    converted: ConvertedForm
    seconds: float


def _mp_context() -> Any:
    global _context
    if _context is None:
        # forkserver: children fork from a clean single-threaded process (forking a threaded web worker
        # that holds database connections is unsafe); preloading pyxform makes each child cheap.
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["forms.convert", "pyxform.xls2json_backends", "pyxform.xls2xform"])
    return _context


def _conversion_message(data: bytes, filename: str, default_form_id: str | None) -> tuple[Any, ...]:
    """Convert and return plain picklable values (never raise: the child must always answer)."""
    try:
        result = convert_upload(data, filename, default_form_id=default_form_id)
        return ("ok", result.xform, result.itemsets, result.warnings, result.source_kind, result.schema.to_json())
    except FormError as exc:
        return ("form_error", exc.code, exc.message, _plain(exc.context))
    except BaseException as exc:  # the parent turns this into a 400
        return ("form_error", "conversion_failed", f"{type(exc).__name__}: {exc}", {})


def _convert_in_child(conn: Connection, data: bytes, filename: str, default_form_id: str | None) -> None:
    """One-shot child process body: convert once and send the answer back."""
    try:
        conn.send(_conversion_message(data, filename, default_form_id))
    finally:
        conn.close()


def _serve_conversions(conn: Connection) -> None:
    """Warm child process body: convert each request it is sent until the pipe closes."""
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the server process is gone, or retired this worker
            return
        if request is None:
            return
        conn.send(_conversion_message(*request))


def _plain(context: dict[str, Any]) -> dict[str, Any]:
    return {str(k): v if isinstance(v, str | int | float | bool | type(None)) else str(v) for k, v in context.items()}


def _timed(message: tuple[Any, ...], seconds: float) -> TimedConversion:
    if message[0] == "form_error":
        _, code, text, ctx = message
        raise FormError(code, text, ctx)
    _, xform, itemsets, warnings, source_kind, schema_json = message
    converted = ConvertedForm(
        xform=xform,
        itemsets=itemsets,
        warnings=tuple(warnings),
        schema=FormSchema.from_json(schema_json),
        source_kind=source_kind,
    )
    return TimedConversion(converted, seconds)


_DIED = ("form_error", "conversion_failed", "The conversion process died (out of memory?)", {})


def convert_in_process(
    data: bytes, filename: str, *, timeout: float, default_form_id: str | None = None
) -> TimedConversion:
    """Convert in a new child process; raise ``FormError`` for bad forms, ``ConversionTimeout`` past ``timeout``."""
    context = _mp_context()
    parent_end, child_end = context.Pipe(duplex=False)
    started = time.monotonic()
    process = context.Process(target=_convert_in_child, args=(child_end, data, filename, default_form_id), daemon=True)
    process.start()
    child_end.close()
    try:
        # Read before join: a big XForm fills the pipe and the child would block on send forever.
        if not parent_end.poll(timeout):
            raise ConversionTimeout(timeout, time.monotonic() - started)
        try:
            message = parent_end.recv()
        except EOFError:
            message = _DIED
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        parent_end.close()
    return _timed(message, _within(timeout, started))


def _within(timeout: float, started: float) -> float:
    """Return the seconds since ``started``; raise ``ConversionTimeout`` past ``timeout``.

    The poll alone is not the limit: a thread descheduled between sending and polling (a busy host) would find
    a reply that came later than the limit and take it as on time.
    """
    elapsed = time.monotonic() - started
    if elapsed > timeout:
        raise ConversionTimeout(timeout, elapsed)
    return elapsed


def _stop_forkserver() -> None:
    """Stop this process's forkserver and resource tracker; multiprocessing starts them again when needed.

    Through their ``_stop`` methods (private: CPython's own tests use them), skipped where absent.
    """
    from multiprocessing import forkserver, resource_tracker

    for helper in (getattr(forkserver, "_forkserver", None), getattr(resource_tracker, "_resource_tracker", None)):
        stop = getattr(helper, "_stop", None)
        if stop is not None:
            stop()


class _Converter:
    """One warm child process and the parent's end of its pipe."""

    def __init__(self) -> None:
        context = _mp_context()
        self.conn, child_end = context.Pipe(duplex=True)
        self.process = context.Process(
            target=_serve_conversions, args=(child_end,), daemon=True, name="fieldsync-form-converter"
        )
        self.process.start()
        child_end.close()
        self.uses = 0
        self.idle_since = 0.0  # time.monotonic() when it was last given back

    def stop(self) -> None:
        """Kill the child (it may be stuck in pyxform) and close the pipe."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class WarmConverters:
    """The converter processes of one server process: idle ones are reused, busy ones never shared."""

    def __init__(
        self, keep_idle: int = WARM_WORKERS, max_uses: int = MAX_USES, idle_seconds: float = IDLE_SECONDS
    ) -> None:
        self.keep_idle = keep_idle
        self.max_uses = max_uses
        self.idle_seconds = idle_seconds
        self._idle: list[_Converter] = []
        self._busy = 0  # converters taken and not yet given back or stopped
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.started = 0  # processes started, for tests and figures
        self.retired = 0  # idle converters stopped for their idleness

    def _take(self) -> _Converter:
        with self._lock:
            if self._pid != os.getpid():  # forked (a pre-forking server): those children are the parent's
                self._idle, self._pid, self._busy, self._timer = [], os.getpid(), 0, None
            self._busy += 1
            while self._idle:
                worker = self._idle.pop()
                if worker.process.is_alive():
                    return worker
                worker.stop()
            self.started += 1
        try:  # counted busy already: the retiring timer leaves the forkserver alone while it forks this one
            return _Converter()
        except BaseException:
            with self._lock:
                self._busy -= 1
            raise

    def _give_back(self, worker: _Converter) -> None:
        worker.uses += 1
        with self._lock:
            self._busy -= 1
            if worker.uses < self.max_uses and len(self._idle) < self.keep_idle and self._pid == os.getpid():
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
                self._retire_later()
                return
        worker.stop()

    def _lost(self, worker: _Converter) -> None:
        """A taken converter that timed out or died: stopped, never given back."""
        worker.stop()
        with self._lock:
            self._busy -= 1

    def _retire_later(self) -> None:
        # Called with the lock held: one timer at a time, for the oldest idle converter.
        if self._timer is None and self._idle:
            due = min(w.idle_since for w in self._idle) + self.idle_seconds - time.monotonic()
            self._timer = threading.Timer(max(due, 0.0), self._retire)
            self._timer.daemon = True
            self._timer.start()

    def _retire(self) -> None:
        """Stop the converters idle for ``idle_seconds``; with the last one, the forkserver behind them."""
        now = time.monotonic()
        with self._lock:
            self._timer = None
            if self._pid != os.getpid():
                return
            stale = [w for w in self._idle if now - w.idle_since >= self.idle_seconds]
            self._idle = [w for w in self._idle if w not in stale]
            for worker in stale:
                worker.stop()
                self.retired += 1
            if stale and not self._idle and not self._busy:
                _stop_forkserver()
            self._retire_later()

    def idle(self) -> int:
        """Return how many warm converters wait for work."""
        with self._lock:
            return len(self._idle)

    def idle_pids(self) -> list[int]:
        """Return the process ids of the idle converters."""
        with self._lock:
            return [worker.process.pid for worker in self._idle if worker.process.pid is not None]

    def close(self) -> None:
        """Stop every idle converter (and the retiring timer)."""
        with self._lock:
            idle, self._idle = self._idle, []
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        for worker in idle:
            worker.stop()

    def convert(
        self, data: bytes, filename: str, *, timeout: float, default_form_id: str | None = None
    ) -> TimedConversion:
        """Convert in a warm child: ``FormError`` for a bad form, ``ConversionTimeout`` (child killed) past it."""
        worker = self._take()
        started = time.monotonic()
        try:
            worker.conn.send((data, filename, default_form_id))
            # Poll before reading: the child may still be writing a big XForm into the pipe.
            if not worker.conn.poll(timeout):
                self._lost(worker)
                raise ConversionTimeout(timeout, time.monotonic() - started)
            message = worker.conn.recv()
        except (EOFError, OSError):
            self._lost(worker)
            message = _DIED
        else:
            try:
                _within(timeout, started)
            except ConversionTimeout:
                self._lost(worker)  # a timeout always ends the child, whichever check saw it
                raise
            self._give_back(worker)
        return _timed(message, time.monotonic() - started)


_warm: WarmConverters | None = None
_warm_lock = threading.Lock()


def warm_converters() -> WarmConverters:
    """Return this server process's warm converters (created on first use)."""
    global _warm
    with _warm_lock:
        if _warm is None:
            _warm = WarmConverters()
        return _warm


def convert_inline(data: bytes, filename: str, *, default_form_id: str | None = None) -> TimedConversion:
    """Convert in this process (tests, CLI): no time limit."""
    started = time.monotonic()
    converted = convert_upload(data, filename, default_form_id=default_form_id)
    return TimedConversion(converted, time.monotonic() - started)


def convert_with_limit(
    data: bytes, filename: str, *, timeout: float | None, inline: bool, default_form_id: str | None = None
) -> TimedConversion:
    """Convert an upload the configured way: inline, or in a warm child process limited to ``timeout`` seconds."""
    try:
        if inline:
            converted = convert_inline(data, filename, default_form_id=default_form_id)
        else:
            converted = warm_converters().convert(
                data, filename, timeout=timeout or DEFAULT_TIMEOUT_SECONDS, default_form_id=default_form_id
            )
    except ConversionTimeout:
        metrics.count_conversion("timeout")
        raise
    except Exception:
        metrics.count_conversion("failed")
        raise
    metrics.count_conversion("ok")
    return converted
