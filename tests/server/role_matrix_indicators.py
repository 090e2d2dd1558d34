"""Role matrix rows for the dashboard's indicators (analysts and managers read; managers define)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form, xlsform
from tests.server.role_matrix import Case, statuses

READERS = ("admin", "manager", "analyst")
MANAGERS = ("admin", "manager")
_BASE = "/v1/projects/{pid}/indicators"
_RULE = "/v1/projects/<int:project_id>/indicators"
COUNT = {"title": {"en": "Beneficiaries {persona}"}, "source": {"form": "roles"}, "measure": {"kind": "count"}}


def roles_form_with_indicator(app: Flask, personas: Personas) -> dict[str, Any]:
    """Publish a one-question form and define an indicator ``n`` over it."""
    from server.services import indicators as svc
    from server.store import get_store

    form = xlsform(
        """
| survey |
|  | type | name | label |
|  | text | nom  | Nom   |
| settings |
|  | form_id | version |
|  | roles   | 1       |
"""
    )
    publish_form(app, personas.project_id, form, "roles.xlsx")
    with app.app_context():
        session = get_store().sessions()
        try:
            body = {**COUNT, "title": {"en": "Beneficiaries"}}
            svc.save_indicator(session, personas.project_id, "n", body, "test")
        finally:
            session.close()
    return {}


CASES = [
    Case("GET", _BASE, _RULE, statuses(200, allowed=READERS), setup="roles_form_with_indicator"),
    Case("GET", f"{_BASE}/n", f"{_RULE}/<name>", statuses(200, allowed=READERS), setup="roles_form_with_indicator"),
    Case(
        "GET",
        f"{_BASE}/n/versions",
        f"{_RULE}/<name>/versions",
        statuses(200, allowed=READERS),
        setup="roles_form_with_indicator",
    ),
    Case(
        "PUT",
        f"{_BASE}/n",
        f"{_RULE}/<name>",
        statuses(201, allowed=MANAGERS),
        json=COUNT,
        setup="roles_form_with_indicator",
    ),
    Case("DELETE", f"{_BASE}/n", f"{_RULE}/<name>", statuses(200, allowed=MANAGERS), setup="roles_form_with_indicator"),
]
