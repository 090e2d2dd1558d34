"""``INSERT ... ON CONFLICT DO NOTHING`` for both stores: uniqueness is the database's job, never check-then-insert."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(
    session: Session,
    table: Table,
    values: Mapping[str, Any],
    conflict_columns: Sequence[str],
    returning: str | None = None,
) -> Any:
    """Insert a row unless one with the same ``conflict_columns`` exists.

    Returns the ``returning`` column of the new row, or ``None`` when the row already existed
    (another transaction may have inserted it first: this is the race-free path).
    """
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).values(**values).on_conflict_do_nothing(index_elements=list(conflict_columns))
    if returning is not None:
        stmt = stmt.returning(table.c[returning])
        return session.execute(stmt).scalar_one_or_none()
    result = session.execute(stmt)
    return result.rowcount  # type: ignore[attr-defined]
