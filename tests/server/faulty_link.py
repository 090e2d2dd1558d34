"""A faulty link between a phone and the server: a loopback TCP proxy that cuts, throttles and stalls.

What 2G from a douar does to a connection (issue 14 "Field networks"):
- **cuts**: every connection is cut once ``cut_every`` bytes went up it, by a reset (``RST``: the
  bytes in flight are lost) or by a clean close (``FIN``);
- **throttle**: at most ``up_bps``/``down_bps`` bytes per second, each way after ``latency`` seconds;
- **stall**: after ``stall_after`` bytes up, nothing more goes either way (the phone went silent).

It counts the bytes that crossed it each way (``bytes_up``, ``bytes_down``): the "bytes on the wire".
Used by the tests (scaled-down sizes, no throttle) and by ``bench/field_link.py`` (full sizes, 2G).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

BUFFER = 16 * 1024


@dataclass
class LinkFaults:
    """What the link does; ``None`` means "never"."""

    cut_every: int | None = None  # bytes up per connection before it is cut
    cut_mode: str = "reset"  # "reset" or "close"
    up_bps: float | None = None
    down_bps: float | None = None
    latency: float = 0.0  # one way, seconds
    stall_after: int | None = None  # bytes up per connection after which the link goes silent


@dataclass
class FaultyLink:
    """A proxy on 127.0.0.1 in front of ``target``; start with ``with FaultyLink(...) as link``."""

    target: tuple[str, int]
    faults: LinkFaults = field(default_factory=LinkFaults)
    bytes_up: int = 0
    bytes_down: int = 0
    connections: int = 0
    cuts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _listener: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        """Where phones connect."""
        assert self._listener is not None
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<proxy port>``."""
        host, port = self.address
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultyLink:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()

    def _spawn(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                phone, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=30)
            except OSError:
                phone.close()
                continue
            for sock in (phone, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
            self._spawn(self._connection, phone, server)

    def _connection(self, phone: socket.socket, server: socket.socket) -> None:
        state = _Connection(phone, server)
        down = threading.Thread(target=self._pump, args=(state, server, phone, False), daemon=True)
        down.start()
        self._pump(state, phone, server, True)
        down.join(timeout=60)
        for sock in (phone, server):
            with contextlib.suppress(OSError):
                sock.close()

    def _pump(self, state: _Connection, source: socket.socket, sink: socket.socket, up: bool) -> None:
        faults = self.faults
        rate = faults.up_bps if up else faults.down_bps
        source.settimeout(0.2)
        while not self._stop.is_set() and not state.cut:
            try:
                data = source.recv(BUFFER)
            except TimeoutError:
                continue
            except OSError:
                state.end(self, reset=True)
                return
            if not data:
                state.end(self, reset=False, half=(source, sink))
                return
            if up:
                data = self._up_budget(state, data)
            if data and faults.latency:
                time.sleep(faults.latency)
            if data and rate:
                time.sleep(len(data) / rate)
            if data:
                try:
                    sink.sendall(data)
                except OSError:
                    state.end(self, reset=True)
                    return
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
            if up and state.stalled:
                while not self._stop.is_set() and not state.cut:
                    time.sleep(0.05)  # silent: the server's silence limit ends it
                return
            if up and state.cut_now:
                state.end(self, reset=faults.cut_mode == "reset", cut=True)
                return

    def _up_budget(self, state: _Connection, data: bytes) -> bytes:
        """The part of ``data`` that crosses before this connection's cut (or stall)."""
        faults = self.faults
        limit = None
        if faults.cut_every is not None:
            limit = faults.cut_every
        if faults.stall_after is not None:
            limit = faults.stall_after if limit is None else min(limit, faults.stall_after)
        if limit is None:
            return data
        room = limit - state.sent_up
        if len(data) >= room:
            data = data[: max(room, 0)]
            if faults.stall_after is not None and limit == faults.stall_after:
                state.stalled = True
            else:
                state.cut_now = True
        state.sent_up += len(data)
        return data


@dataclass
class _Connection:
    phone: socket.socket
    server: socket.socket
    sent_up: int = 0
    cut: bool = False
    cut_now: bool = False
    stalled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def end(
        self,
        link: FaultyLink,
        *,
        reset: bool,
        cut: bool = False,
        half: tuple[socket.socket, socket.socket] | None = None,
    ) -> None:
        """End both sides: a reset (``SO_LINGER`` 0), a clean close, or pass on one side's FIN."""
        with self._lock:
            if self.cut:
                return
            if half is not None and not cut:
                # One side finished sending (an ordinary end of a request or response): pass it on.
                with contextlib.suppress(OSError):
                    half[1].shutdown(socket.SHUT_WR)
                if half[0] is self.phone:
                    return  # the response may still come back
            self.cut = True
            if cut:
                with link._lock:
                    link.cuts += 1
            for sock in (self.phone, self.server):
                with contextlib.suppress(OSError):
                    if reset:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    else:
                        sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
