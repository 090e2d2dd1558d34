"""Running ``forms.convert.convert_upload`` off the request thread, in a child process with a time limit.

pyxform is quadratic on big repeats (docs/reference/xlsform.md §1.7: one corpus form takes 20+ s), so a
conversion runs in its own process that is killed when ``FORM_CONVERT_TIMEOUT`` passes; the web worker
stays responsive and the admin gets a ``conversion_timeout`` that says how long was allowed. The child
is forked from a ``forkserver`` that has pyxform preloaded, so a conversion costs a fork, not an import.
Tests may set ``FORM_CONVERT_INLINE`` to convert in-process (the timeout path is tested with the process).
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from forms.convert import ConvertedForm, convert_upload
from forms.errors import FormError
from forms.schema import FormSchema
from server import metrics

DEFAULT_TIMEOUT_SECONDS = 60.0
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
        _context.set_forkserver_preload(["forms.convert"])
    return _context


def _convert_in_child(conn: Connection, data: bytes, filename: str, default_form_id: str | None) -> None:
    """Child process body: convert and send back plain picklable values (never raise through the pipe)."""
    try:
        result = convert_upload(data, filename, default_form_id=default_form_id)
        conn.send(("ok", result.xform, result.itemsets, result.warnings, result.source_kind, result.schema.to_json()))
    except FormError as exc:
        conn.send(("form_error", exc.code, exc.message, _plain(exc.context)))
    except BaseException as exc:  # the child must always answer; the parent turns this into a 400
        conn.send(("form_error", "conversion_failed", f"{type(exc).__name__}: {exc}", {}))
    finally:
        conn.close()


def _plain(context: dict[str, Any]) -> dict[str, Any]:
    return {str(k): v if isinstance(v, str | int | float | bool | type(None)) else str(v) for k, v in context.items()}


def convert_in_process(
    data: bytes, filename: str, *, timeout: float, default_form_id: str | None = None
) -> TimedConversion:
    """Convert in a child process; raise ``FormError`` for bad forms, ``ConversionTimeout`` past ``timeout``."""
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
            message = ("form_error", "conversion_failed", "The conversion process died (out of memory?)", {})
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        parent_end.close()
    seconds = time.monotonic() - started
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


def convert_inline(data: bytes, filename: str, *, default_form_id: str | None = None) -> TimedConversion:
    """Convert in this process (tests, CLI): no time limit."""
    started = time.monotonic()
    converted = convert_upload(data, filename, default_form_id=default_form_id)
    return TimedConversion(converted, time.monotonic() - started)


def convert_with_limit(
    data: bytes, filename: str, *, timeout: float | None, inline: bool, default_form_id: str | None = None
) -> TimedConversion:
    """Convert an upload the configured way: inline, or in a child process limited to ``timeout`` seconds."""
    try:
        if inline:
            converted = convert_inline(data, filename, default_form_id=default_form_id)
        else:
            converted = convert_in_process(
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
