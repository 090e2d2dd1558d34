"""The raw-database references: the same rows written or read by psycopg 3 alone, in the same run.

Writes go to two bench-only tables shaped like ``submissions`` + ``submission_versions`` (same
columns, types, unique keys and indexes, no foreign keys): one logical submission = one row in each,
with the ~2 KB XML as ``bytea`` and the parsed record as ``jsonb``. Three ways:

* one transaction per row (what a request-per-submission protocol costs at best), 1 or N connections;
* batched ``executemany`` in pipeline mode, one transaction per batch of 200 (a push batch);
* ``COPY ... FROM STDIN`` in one transaction (the ceiling).

Reads: the formList SELECT as the forms area writes it, and ``COPY (SELECT ...) TO STDOUT`` of the
rows an export reads. The tables are created in the bench database, so they vanish with it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg

RAW_DDL = """
CREATE TABLE IF NOT EXISTS bench_raw_submissions (
    id bigserial PRIMARY KEY,
    project_id bigint NOT NULL,
    form_id bigint NOT NULL,
    instance_id varchar(255) NOT NULL,
    current_instance_id varchar(255) NOT NULL,
    review_state varchar(20) NOT NULL CHECK (review_state IN ('received', 'has_issues', 'approved', 'rejected')),
    edits integer NOT NULL,
    submitter_id bigint,
    device_token_id bigint,
    attachments_expected integer NOT NULL,
    attachments_present integer NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_bench_raw_submissions_listing
    ON bench_raw_submissions (project_id, form_id, created_at, id);
CREATE TABLE IF NOT EXISTS bench_raw_submission_versions (
    id bigserial PRIMARY KEY,
    submission_id bigint NOT NULL,
    project_id bigint NOT NULL,
    form_id bigint NOT NULL,
    form_version_id bigint NOT NULL,
    instance_id varchar(255) NOT NULL,
    deprecated_id varchar(255),
    form_version varchar(255) NOT NULL,
    xml bytea NOT NULL,
    xml_sha256 varchar(64) NOT NULL,
    record jsonb NOT NULL,
    instance_name text,
    encrypted boolean NOT NULL,
    source varchar(10) NOT NULL,
    received_at timestamptz NOT NULL,
    submitter_id bigint,
    device_token_id bigint,
    device_id varchar(255),
    user_agent varchar(500),
    CONSTRAINT uq_bench_raw_versions UNIQUE (project_id, form_id, instance_id)
);
CREATE INDEX IF NOT EXISTS ix_bench_raw_versions_submission ON bench_raw_submission_versions (submission_id);
CREATE INDEX IF NOT EXISTS ix_bench_raw_versions_deprecated
    ON bench_raw_submission_versions (project_id, form_id, deprecated_id);
"""

# One statement per submission: the logical row and its version, as the ingest service writes them.
INSERT_ONE = """
WITH s AS (
    INSERT INTO bench_raw_submissions (project_id, form_id, instance_id, current_instance_id, review_state, edits,
        submitter_id, device_token_id, attachments_expected, attachments_present, created_at, updated_at)
    VALUES (%(project_id)s, %(form_id)s, %(instance_id)s, %(instance_id)s, 'received', 0,
        NULL, %(device_token_id)s, 0, 0, now(), now())
    RETURNING id
)
INSERT INTO bench_raw_submission_versions (submission_id, project_id, form_id, form_version_id, instance_id,
    deprecated_id, form_version, xml, xml_sha256, record, instance_name, encrypted, source, received_at,
    submitter_id, device_token_id, device_id, user_agent)
SELECT s.id, %(project_id)s, %(form_id)s, %(form_version_id)s, %(instance_id)s, NULL, %(form_version)s, %(xml)s,
    %(xml_sha256)s, %(record)s::jsonb, NULL, false, 'openrosa', now(), NULL, %(device_token_id)s,
    'collect:bench', 'org.odk.collect.android/bench'
FROM s
"""

SUBMISSION_COPY_COLUMNS = (
    "id, project_id, form_id, instance_id, current_instance_id, review_state, edits, submitter_id, "
    "device_token_id, attachments_expected, attachments_present, created_at, updated_at"
)
VERSION_COPY_COLUMNS = (
    "id, submission_id, project_id, form_id, form_version_id, instance_id, deprecated_id, form_version, xml, "
    "xml_sha256, record, instance_name, encrypted, source, received_at, submitter_id, device_token_id, "
    "device_id, user_agent"
)

# The formList query of server/db/queries/forms.py:formlist_rows, written out.
FORMLIST_SQL = """
SELECT f.xml_form_id, v.title, v.version, v.xform_md5,
       EXISTS (SELECT 1 FROM form_attachments a WHERE a.form_version_id = v.id) AS has_manifest
FROM forms f JOIN form_versions v ON v.id = f.current_version_id
WHERE f.project_id = %s AND f.state = 'open'
ORDER BY f.xml_form_id
"""

# What an export reads (server/db/queries/exports.py:_record_query, without its paging): every version of
# the form's submissions with the submitter's and device's names.
EXPORT_SELECT_SQL = """
SELECT s.id AS sid, v.id AS vid, v.instance_id, v.form_version, v.record, v.device_id, s.created_at,
       s.current_instance_id, s.review_state, s.edits, s.attachments_present, s.attachments_expected,
       u.username, t.name AS device_name
FROM submission_versions v
JOIN submissions s ON s.id = v.submission_id
LEFT JOIN users u ON u.id = v.submitter_id
LEFT JOIN access_tokens t ON t.id = v.device_token_id
WHERE v.form_id = {form_id} AND v.encrypted IS false
ORDER BY s.id, v.id
"""


@dataclass(frozen=True, slots=True)
class RawRow:
    """One submission as the database stores it: XML bytes, hash and the record as JSON text."""

    instance_id: str
    xml: bytes
    xml_sha256: str
    record_json: str
    form_version: str


@dataclass(frozen=True, slots=True)
class RawTarget:
    """Ids the raw rows carry (the bench project's form and version, the device)."""

    project_id: int
    form_id: int
    form_version_id: int
    device_token_id: int | None


def make_raw_row(instance_id: str, xml: bytes, record: Any, form_version: str) -> RawRow:
    """Return a ``RawRow`` from a submission and its parsed record values."""
    return RawRow(
        instance_id=instance_id,
        xml=xml,
        xml_sha256=hashlib.sha256(xml).hexdigest(),
        record_json=json.dumps(record, ensure_ascii=False),
        form_version=form_version,
    )


def relabel(rows: Sequence[RawRow], tag: str) -> list[RawRow]:
    """Return ``rows`` with instance ids made unique for one round (``tag`` appended)."""
    return [replace(row, instance_id=f"{row.instance_id}-{tag}") for row in rows]


def create_raw_tables(url: str) -> None:
    """Create the raw tables in the bench database."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_DDL)


def row_params(row: RawRow, target: RawTarget) -> dict[str, Any]:
    """The statement parameters of one raw row for ``target`` (what ``INSERT_ONE`` binds)."""
    return {
        "project_id": target.project_id,
        "form_id": target.form_id,
        "form_version_id": target.form_version_id,
        "device_token_id": target.device_token_id,
        "instance_id": row.instance_id,
        "form_version": row.form_version,
        "xml": row.xml,
        "xml_sha256": row.xml_sha256,
        "record": row.record_json,
    }


@dataclass(frozen=True, slots=True)
class RawTiming:
    """Rows written (or read) and the wall time it took, plus per-operation latencies when meaningful."""

    rows: int
    seconds: float
    latencies: tuple[float, ...] = ()

    @property
    def per_second(self) -> float:
        """Rows per second."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _run_together(connections: int, work: Any) -> float:
    """Run ``work(index)`` in ``connections`` threads started at a barrier; seconds from first start to last end."""
    barrier = threading.Barrier(connections)
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * connections

    def run(index: int) -> None:
        barrier.wait()
        start = time.perf_counter()
        work(index)
        spans[index] = (start, time.perf_counter())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return max(end for _, end in spans) - min(start for start, _ in spans)


def insert_one_per_transaction(url: str, rows: Sequence[RawRow], target: RawTarget, connections: int = 1) -> RawTiming:
    """Insert each row in its own transaction (commit per row) from ``connections`` connections."""
    slices = [[row_params(row, target) for row in rows[i::connections]] for i in range(connections)]
    conns = [psycopg.connect(url) for _ in range(connections)]
    latencies: list[list[float]] = [[] for _ in range(connections)]

    def work(index: int) -> None:
        conn = conns[index]
        for item in slices[index]:
            t0 = time.perf_counter()
            conn.execute(INSERT_ONE, item)
            conn.commit()
            latencies[index].append(time.perf_counter() - t0)

    elapsed = _run_together(connections, work)
    for conn in conns:
        conn.close()
    return RawTiming(len(rows), elapsed, tuple(lat for part in latencies for lat in part))


def insert_batched(url: str, rows: Sequence[RawRow], target: RawTarget, batch_size: int = 200) -> RawTiming:
    """Insert rows with ``executemany`` in pipeline mode, one transaction per batch."""
    params = [row_params(row, target) for row in rows]
    latencies = []
    with psycopg.connect(url) as conn:
        start = time.perf_counter()
        for offset in range(0, len(params), batch_size):
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                # psycopg 3 runs executemany through libpq's pipeline mode: one round trip per batch.
                cur.executemany(INSERT_ONE, params[offset : offset + batch_size])
            conn.commit()
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    return RawTiming(len(rows), elapsed, tuple(latencies))


def insert_batched_concurrently(
    url: str, rows: Sequence[RawRow], target: RawTarget, connections: int, batch_size: int = 200
) -> RawTiming:
    """``insert_batched`` from ``connections`` connections at once (rows dealt round robin): the like-for-like
    reference for several clients pushing together."""
    slices = [list(rows[i::connections]) for i in range(connections)]
    results: list[RawTiming | None] = [None] * connections

    def work(index: int) -> None:
        results[index] = insert_batched(url, slices[index], target, batch_size)

    elapsed = _run_together(connections, work)
    latencies = tuple(lat for result in results if result is not None for lat in result.latencies)
    return RawTiming(len(rows), elapsed, latencies)


def _reserve_ids(conn: psycopg.Connection[Any], sequence: str, count: int) -> list[int]:
    cur = conn.execute(f"SELECT nextval('{sequence}') FROM generate_series(1, %s)", (count,))
    return [int(r[0]) for r in cur.fetchall()]


def copy_rows(
    conn: psycopg.Connection[Any],
    rows: Iterable[RawRow],
    target: RawTarget,
    submission_ids: Sequence[int],
    version_ids: Sequence[int],
    *,
    submissions_table: str = "bench_raw_submissions",
    versions_table: str = "bench_raw_submission_versions",
    received_at: Any = None,
) -> int:
    """COPY ``rows`` into a submissions/versions table pair with the given ids; return the count."""
    rows = list(rows)
    at = received_at or time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    with conn.cursor() as cur:
        with cur.copy(f"COPY {submissions_table} ({SUBMISSION_COPY_COLUMNS}) FROM STDIN") as copy:
            for row, sid in zip(rows, submission_ids, strict=True):
                copy.write_row(
                    (sid, target.project_id, target.form_id, row.instance_id, row.instance_id, "received", 0,
                     None, target.device_token_id, 0, 0, at, at)
                )  # fmt: skip
        with cur.copy(f"COPY {versions_table} ({VERSION_COPY_COLUMNS}) FROM STDIN") as copy:
            for row, sid, vid in zip(rows, submission_ids, version_ids, strict=True):
                copy.write_row(
                    (vid, sid, target.project_id, target.form_id, target.form_version_id, row.instance_id, None,
                     row.form_version, row.xml, row.xml_sha256, row.record_json, None, False, "openrosa", at,
                     None, target.device_token_id, "collect:bench", "org.odk.collect.android/bench")
                )  # fmt: skip
    return len(rows)


def insert_copy(url: str, rows: Sequence[RawRow], target: RawTarget) -> RawTiming:
    """Write rows with ``COPY FROM STDIN`` into both tables, in one transaction."""
    with psycopg.connect(url) as conn:
        sids = _reserve_ids(conn, "bench_raw_submissions_id_seq", len(rows))
        vids = _reserve_ids(conn, "bench_raw_submission_versions_id_seq", len(rows))
        conn.commit()
        start = time.perf_counter()
        copy_rows(conn, rows, target, sids, vids)
        conn.commit()
        elapsed = time.perf_counter() - start
    return RawTiming(len(rows), elapsed)


def select_formlist(url: str, project_id: int, iterations: int, connections: int = 1) -> RawTiming:
    """Run the formList SELECT ``iterations`` times over ``connections`` connections (prepared)."""
    conns = [psycopg.connect(url, autocommit=True) for _ in range(connections)]
    share = [iterations // connections + (1 if i < iterations % connections else 0) for i in range(connections)]
    barrier = threading.Barrier(connections)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * connections

    def work(index: int) -> None:
        conn = conns[index]
        conn.execute(FORMLIST_SQL, (project_id,), prepare=True).fetchall()
        barrier.wait()
        start = time.perf_counter()
        for _ in range(share[index]):
            t0 = time.perf_counter()
            conn.execute(FORMLIST_SQL, (project_id,), prepare=True).fetchall()
            latencies[index].append(time.perf_counter() - t0)
        spans[index] = (start, time.perf_counter())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for conn in conns:
        conn.close()
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    return RawTiming(iterations, elapsed, tuple(lat for part in latencies for lat in part))


def copy_export_rows(url: str, form_id: int) -> tuple[RawTiming, int]:
    """``COPY (export SELECT) TO STDOUT`` of a form's rows; return the timing and the bytes read."""
    query = EXPORT_SELECT_SQL.format(form_id=int(form_id))
    with psycopg.connect(url) as conn:
        count_row = conn.execute(f"SELECT count(*) FROM ({query}) q").fetchone()
        count = int(count_row[0]) if count_row else 0
        total = 0
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT") as copy:
            for chunk in copy:
                total += len(chunk)
        elapsed = time.perf_counter() - start
    return RawTiming(count, elapsed), total
