"""Whole-table reads and writes for backups, restores and store moves (every table, in dependency order)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, select, text, update

from server.db.base import Base

BATCH = 1000


def tables() -> list[Table]:
    """Every table of the models, parents before children (the order rows can be inserted in)."""
    import server.db.models  # noqa: F401  (registers every model's table)

    return list(Base.metadata.sorted_tables)


def iter_rows(conn: Connection, table: Table) -> Iterator[dict[str, Any]]:
    """Every row of ``table`` in primary-key order, streamed (a server-side cursor on PostgreSQL)."""
    stmt = select(table).order_by(*table.primary_key.columns)
    for partition in conn.execution_options(stream_results=True, yield_per=BATCH).execute(stmt).mappings().partitions():
        yield from (dict(row) for row in partition)


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (one executemany)."""
    if rows:
        conn.execute(insert(table), list(rows))


def update_row(conn: Connection, table: Table, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Set ``values`` on the row of ``table`` whose primary key is ``key``."""
    conn.execute(update(table).where(*(table.c[k] == v for k, v in key.items())).values(**values))


def count_rows(conn: Connection, table: Table) -> int:
    """How many rows ``table`` has."""
    return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def clear(conn: Connection, table: Table) -> None:
    """Delete every row of ``table`` (the rows migrations seed, before a restore replaces them)."""
    conn.execute(delete(table))


def reset_sequences(conn: Connection) -> None:
    """PostgreSQL: move each ``id`` sequence past the ids inserted explicitly (SQLite needs nothing)."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables():
        if "id" not in table.c or not table.c.id.primary_key or table.c.id.autoincrement is False:
            continue
        sequence = conn.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name})
        if sequence is None:
            continue
        top = conn.scalar(select(func.max(table.c.id)))
        conn.execute(text("SELECT setval(:s, :v, :called)"), {"s": sequence, "v": top or 1, "called": top is not None})
