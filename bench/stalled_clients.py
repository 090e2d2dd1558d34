"""``python -m bench.stalled_clients``: 10 stalled requests against one SQLite ``fieldsync serve``.

The figure of issue 14's third acceptance point: three OpenRosa POSTs, three pushes and two tus PATCHes
that stop halfway through their body, and two requests that stop halfway through their headers, all
held open and silent. Meanwhile ``/healthz`` is asked every 0.2 s and another coach sends a submission
every second; the run reports the slowest ``/healthz``, how many of the coach's submissions were stored
(201) and how each stalled request ended, with the default silence limit (30 s) unless told otherwise.
The result replaces the "Stalled clients" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from bench.field_link import REPO, write_section
from tests.server.live_server import collect_post, connect, exchange, live_server, read_response
from tests.server.test_serving import _stalled_requests

SECTION = "## Stalled clients (SQLite)"


def main(argv: list[str]) -> None:
    """Run the figure and write it into the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--silence", type=float, default=30.0)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as tmp,
        live_server(Path(tmp), client_silence_timeout=str(args.silence)) as server,
    ):
        stalled: dict[str, socket.socket] = {}
        for name, sent in _stalled_requests(server).items():
            sock = connect(server)
            sock.sendall(sent)
            stalled[name] = sock
        started = time.monotonic()
        slowest, asked, stored, sent_subs = 0.0, 0, 0, 0
        last_post = 0.0
        while time.monotonic() - started < args.silence + 5:
            t0 = time.monotonic()
            assert requests.get(f"{server.base_url}/healthz", timeout=60).status_code == 200
            slowest, asked = max(slowest, time.monotonic() - t0), asked + 1
            if time.monotonic() - last_post >= 1.0:
                last_post = time.monotonic()
                answer = exchange(server, collect_post(server, f"uuid:{uuid.uuid4()}", {})[0])
                sent_subs += 1
                stored += answer is not None and answer.status == 201
            time.sleep(0.2)
        endings = {}
        for name, sock in stalled.items():
            answer = read_response(sock)
            endings[name] = str(answer.status) if answer else "closed"
            sock.close()
    kinds: dict[str, list[str]] = {}
    for name, ending in endings.items():
        kinds.setdefault(name.rsplit("-", 1)[0], []).append(ending)
    text = "\n".join(
        [
            SECTION,
            "",
            f"`python -m bench.stalled_clients`: 10 requests stopped halfway (3 OpenRosa POSTs, 3 pushes, 2 tus "
            f"PATCHes of one upload, 2 half heads) against one SQLite `fieldsync serve` (32 threads), silence "
            f"limit {args.silence:g} s, for {args.silence + 5:g} s:",
            "",
            "| `/healthz` asked | slowest `/healthz` | others' submissions stored | how the stalled requests ended |",
            "|---|---|---|---|",
            f"| {asked} | {slowest * 1000:.0f} ms | {stored} / {sent_subs} | "
            + ", ".join(f"{kind}: {' '.join(v)}" for kind, v in kinds.items())
            + " |",
            "",
            "A stalled request holds one thread and nothing else (its body is spooled before a transaction",
            "opens); after the silence limit a body ends with its 400 (a cut OpenRosa POST keeps its XML, a cut",
            "tus PATCH its bytes), half a head with a closed connection.",
            "",
        ]
    )
    print(text)
    write_section(text)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main(sys.argv[1:])
