"""Console page of an office server's relay: for each relayed project, the queue still to send upstream,
the last contact with the national server and the last error (admins; ``fieldsync relay`` writes it)."""

from __future__ import annotations

from server.auth import require_admin
from server.console import bp
from server.console.pages import render
from server.services import relay_uplink
from server.store import db_session


@bp.get("/relay")
def relay_state() -> tuple[str, int]:
    """The relay's state per relayed project: queue size, last contact, last error."""
    require_admin()
    return render("relay.html", links=relay_uplink.link_states(db_session()))
