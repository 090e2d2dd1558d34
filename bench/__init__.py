"""Fieldsync's benchmark harness: ``python -m bench [NAME ...]`` (``make bench``).

It starts PostgreSQL if needed, creates a fresh database, serves the app with gunicorn, runs each
benchmark over several rounds after a warm-up next to the raw-database reference measured in the
same run, and writes ``bench/results.json`` and ``docs/benchmarks.md``.
"""
