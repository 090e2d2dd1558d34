"""Health checks: ``/healthz/live`` (the process answers), ``/healthz/ready`` and ``/healthz`` (the store
answers and its schema is at the newest migration).

A load balancer routes to a host while it is ready; an orchestrator restarts it only when it is not
live, so a database outage (every host unready) does not make every web process restart at once.
"""

from __future__ import annotations

from typing import Any

from alembic.runtime.migration import MigrationContext
from flask import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from server.api.contract import documented
from server.db.migrate import head_revision
from server.db.transaction import read_without_transaction
from server.store import db_session, get_store

bp = Blueprint("health", __name__)


class HealthOut(Schema):
    status = fields.String(validate=validate.OneOf(["ok", "degraded", "unavailable"]))
    database = fields.String(validate=validate.OneOf(["ok", "unreachable"]))
    migration = fields.String(allow_none=True)
    head = fields.String(allow_none=True)
    error = fields.String()


class LiveOut(Schema):
    status = fields.String(validate=validate.OneOf(["ok"]))


@bp.get("/healthz/live")
@documented({200: LiveOut}, public=True)
def live() -> tuple[dict[str, Any], int]:
    """Answer 200 while the process serves requests; touches no database."""
    return {"status": "ok"}, 200


@bp.get("/healthz/ready")
@documented({200: HealthOut, 503: HealthOut}, public=True)
def ready() -> tuple[dict[str, Any], int]:
    """Report store reachability and migration state (200 ready, 503 otherwise)."""
    return healthz()


@bp.get("/healthz")
@documented({200: HealthOut, 503: HealthOut}, public=True)
def healthz() -> tuple[dict[str, Any], int]:
    """Report store reachability and migration state (200 healthy, 503 otherwise)."""
    session = db_session()
    try:
        read_without_transaction(session)  # no ROLLBACK to deallocate the pooled connection's prepared statements
        connection = session.connection()
        connection.execute(text("SELECT 1"))
        current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        session.rollback()
        return {"status": "unavailable", "database": "unreachable", "error": type(exc).__name__}, 503
    head = head_revision(get_store().engine)
    ok = current == head
    body = {"status": "ok" if ok else "degraded", "database": "ok", "migration": current, "head": head}
    return body, 200 if ok else 503
