"""The load generator: N clients, each with its own keep-alive connection, sending prepared requests.

Requests are prepared before the clock starts (multipart and JSON bodies already encoded) so the
clients spend their CPU on HTTP, not on building payloads. Each client speaks HTTP/1.1 through the
standard library's ``http.client`` on one kept-alive connection, as a lean load tool (wrk, hey)
would: on 2 cores shared with the server, every millisecond of client CPU is taken from the server.
Measured with ``client_cpu_ms_per_request`` in ``results.json``: ``requests`` took 0.66-0.83 ms per
request; ``http.client`` took 0.42-0.68 ms on a machine whose raw database references were 2.6x
slower, i.e. about 0.2 ms on the former one. Clients are threads (default) or forked processes.
Measured, not assumed: on 2 cores shared with the server, 4 paired A/B runs of formList from 8
clients gave threads 237/304/351/310 req/s against processes 160/251/291/237: processes do escape
the client's GIL, but they take that CPU from the server, so threads skew the figures less here.
Every formList run re-measures the other mode; the report records the clients' CPU time per
request. Each client opens its connection before a barrier, so every client starts sending at the
same moment. Throughput = requests / (last end - first start).
"""

from __future__ import annotations

import http.client
import multiprocessing
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.results import Figure, Reference, Target
from bench.stats import latency, spread

ClientMode = Literal["threads", "processes"]


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """One request to send: method, path below the base URL, headers and an encoded body."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass
class LoadResult:
    """What one load run measured."""

    count: int
    elapsed: float
    latencies: list[float]
    statuses: Counter[int]
    client_cpu_seconds: float
    unexpected: int
    sample_error: str | None = None

    @property
    def per_second(self) -> float:
        """Requests completed per second of wall time."""
        return self.count / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class _ClientOutcome:
    started: float
    finished: float
    latencies: list[float]
    statuses: Counter[int]
    cpu: float
    unexpected: int
    sample_error: str | None


# The job a forked client runs; set in the parent just before forking so children inherit it.
_JOB: dict[str, Any] = {}


class _Client:
    """One keep-alive HTTP/1.1 connection to the server under test."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.prefix = parts.path.rstrip("/")
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send one request and read the whole answer; reconnect once if the server closed the connection."""
        for attempt in (1, 2):
            try:
                self.connection.request(method, self.prefix + path, body=body, headers=headers)
                response = self.connection.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                # Every endpoint measured here is idempotent, so a resend after a dropped
                # keep-alive connection is safe; it is counted once.
                self.connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def _run_client(index: int, barrier: Any) -> _ClientOutcome:
    base_url: str = _JOB["base_url"]
    items: list[PreparedRequest] = _JOB["slices"][index]
    expected: frozenset[int] = _JOB["expected"]
    client = _Client(base_url)
    # Open the keep-alive connection before the barrier: connection set-up is not what we measure.
    client.send("GET", "/healthz", None, {})
    barrier.wait()
    cpu0 = time.process_time() if _JOB["mode"] == "processes" else time.thread_time()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    unexpected = 0
    sample_error = None
    started = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        status, content = client.send(item.method, item.path, item.body, item.headers)
        latencies.append(time.perf_counter() - t0)
        statuses[status] += 1
        if status not in expected:
            unexpected += 1
            if sample_error is None:
                sample_error = f"{status} {item.method} {item.path}: {content[:300].decode('utf-8', 'replace')}"
    finished = time.perf_counter()
    cpu1 = time.process_time() if _JOB["mode"] == "processes" else time.thread_time()
    client.close()
    return _ClientOutcome(started, finished, latencies, statuses, cpu1 - cpu0, unexpected, sample_error)


def _process_entry(index: int, barrier: Any, queue: Any) -> None:
    try:
        queue.put((index, _run_client(index, barrier)))
    except BaseException as exc:  # report, never hang the parent on a missing result
        queue.put((index, f"{type(exc).__name__}: {exc}"))


def split_round_robin(items: list[PreparedRequest], clients: int) -> list[list[PreparedRequest]]:
    """Deal ``items`` to ``clients`` like cards, so each client gets the same share."""
    return [items[index::clients] for index in range(clients)]


def run_load(
    base_url: str,
    items: list[PreparedRequest],
    *,
    clients: int = 1,
    mode: ClientMode = "threads",
    expected: frozenset[int] = frozenset({200}),
) -> LoadResult:
    """Send ``items`` from ``clients`` concurrent clients and measure throughput and latency."""
    _JOB.clear()
    _JOB.update(
        base_url=base_url,
        slices=split_round_robin(items, clients),
        expected=expected,
        mode=mode if clients > 1 else "threads",
    )
    outcomes: list[_ClientOutcome] = []
    if clients == 1 or mode == "threads":
        barrier: Any = threading.Barrier(clients)
        results: list[_ClientOutcome | None] = [None] * clients
        errors: list[BaseException] = []

        def target(index: int) -> None:
            try:
                results[index] = _run_client(index, barrier)
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=target, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"a load client failed: {errors[0]!r}")
        outcomes = [r for r in results if r is not None]
    else:
        context = multiprocessing.get_context("fork")
        barrier = context.Barrier(clients)
        queue = context.Queue()
        processes = [context.Process(target=_process_entry, args=(i, barrier, queue)) for i in range(clients)]
        for process in processes:
            process.start()
        received = [queue.get(timeout=1800) for _ in processes]
        for process in processes:
            process.join()
        failures = [value for _, value in received if isinstance(value, str)]
        if failures:
            raise RuntimeError(f"a load client failed: {failures[0]}")
        outcomes = [value for _, value in received if isinstance(value, _ClientOutcome)]
    _JOB.clear()
    statuses: Counter[int] = Counter()
    for outcome in outcomes:
        statuses.update(outcome.statuses)
    return LoadResult(
        count=sum(len(o.latencies) for o in outcomes),
        elapsed=max(o.finished for o in outcomes) - min(o.started for o in outcomes),
        latencies=[lat for o in outcomes for lat in o.latencies],
        statuses=statuses,
        client_cpu_seconds=sum(o.cpu for o in outcomes),
        unexpected=sum(o.unexpected for o in outcomes),
        sample_error=next((o.sample_error for o in outcomes if o.sample_error), None),
    )


def load_figure(
    name: str,
    unit: str,
    results: list[LoadResult],
    reference: Reference,
    target: Target | None,
    extra: dict[str, Any] | None = None,
) -> Figure:
    """A figure over load runs: rate spread, every latency and the clients' CPU per request."""
    client_cpu = sum(r.client_cpu_seconds for r in results) / max(1, sum(r.count for r in results))
    return Figure(
        name=name,
        unit=unit,
        spread=spread([r.per_second for r in results]),
        latency=latency([lat for r in results for lat in r.latencies]),
        reference=reference,
        target=target,
        extra={**(extra or {}), "client_cpu_ms_per_request": round(client_cpu * 1000, 3)},
    )
