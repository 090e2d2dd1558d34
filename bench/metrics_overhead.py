"""The CPU the metrics request hooks add to one request, measured in-process: ``python -m bench.metrics_overhead``.

Runs the two hooks (timer start, histogram observation on a cached child) inside a real request context
many times and prints microseconds of CPU per request; with ``PROMETHEUS_MULTIPROC_DIR`` set it measures
the multiprocess (memory-mapped) values ``fieldsync serve`` uses.
"""

from __future__ import annotations

import tempfile
import time

from flask import Response

from server import create_app

ROUNDS = 200_000


def main() -> None:
    """Print the hooks' CPU per request."""
    folder = tempfile.mkdtemp()
    app = create_app(
        {"DATABASE_URL": f"sqlite:///{folder}/m.sqlite3", "VAR_DIR": folder, "SECRET_KEY": "x", "LOG_REQUESTS": False}
    )
    start = next(f for f in app.before_request_funcs[None] if f.__name__ == "_start_metrics_timer")
    observe = next(f for f in app.after_request_funcs[None] if f.__name__ == "_observe_request")
    response = Response(status=201)
    with app.test_request_context("/v1/key/abc/projects/1/submission", method="POST"):
        from flask import request

        request.url_rule = app.url_map.bind("localhost").match(
            "/v1/key/abc/projects/1/submission", method="POST", return_rule=True
        )[0]
        for _ in range(1000):
            start()
            observe(response)
        began = time.process_time()
        for _ in range(ROUNDS):
            start()
            observe(response)
        spent = time.process_time() - began
    print(f"metrics hooks: {spent / ROUNDS * 1e6:.2f} us of CPU per request")


if __name__ == "__main__":
    main()
