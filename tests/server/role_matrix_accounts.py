"""Role matrix rows for projects, users, roles, assignments, app users, sessions, audits and health."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import Personas
from tests.server.fixtures_forms import COOP_XLSX, publish_form
from tests.server.role_matrix import Case, statuses

EVERYONE = ("admin", "manager", "coach", "analyst", "outsider", "device")
PEOPLE = ("admin", "manager", "coach", "analyst", "outsider")
PROJECT_PEOPLE = ("admin", "manager", "coach", "analyst", "device")

CASES = [
    Case("GET", "/healthz", "/healthz", {p: 200 for p in ("anonymous", *EVERYONE)}),
    Case("GET", "/healthz/live", "/healthz/live", {p: 200 for p in ("anonymous", *EVERYONE)}),
    Case("GET", "/healthz/ready", "/healthz/ready", {p: 200 for p in ("anonymous", *EVERYONE)}),
    Case("GET", "/metrics", "/metrics", statuses(200, allowed=("admin",))),
    Case("GET", "/v1/users/current", "/v1/users/current", statuses(200, allowed=PEOPLE)),
    Case("GET", "/v1/users", "/v1/users", statuses(200, allowed=("admin",))),
    Case(
        "POST",
        "/v1/users",
        "/v1/users",
        statuses(200, allowed=("admin",)),
        json={"email": "newperson-{persona}@example.org", "password": "long enough pw"},
    ),
    Case("GET", "/v1/roles", "/v1/roles", statuses(200, allowed=PEOPLE)),
    Case("GET", "/v1/projects", "/v1/projects", statuses(200, allowed=PEOPLE)),
    Case("POST", "/v1/projects", "/v1/projects", statuses(200, allowed=("admin",)), json={"name": "Projet {persona}"}),
    Case("GET", "/v1/projects/{pid}", "/v1/projects/<int:project_id>", statuses(200, allowed=PROJECT_PEOPLE)),
    Case(
        "GET",
        "/v1/projects/{pid}/assignments",
        "/v1/projects/<int:project_id>/assignments",
        statuses(200, allowed=("admin", "manager")),
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/assignments/viewer/{analyst_id}",
        "/v1/projects/<int:project_id>/assignments/<role_id>/<int:actor_id>",
        statuses(200, allowed=("admin", "manager")),
        setup="analyst_id",
    ),
    Case(
        "DELETE",
        "/v1/projects/{pid}/assignments/5/{analyst_id}",
        "/v1/projects/<int:project_id>/assignments/<role_id>/<int:actor_id>",
        statuses(200, allowed=("admin", "manager")),
        setup="analyst_id",
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/app-users",
        "/v1/projects/<int:project_id>/app-users",
        statuses(200, allowed=("admin", "manager")),
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/app-users",
        "/v1/projects/<int:project_id>/app-users",
        statuses(200, allowed=("admin", "manager")),
        json={"displayName": "phone {persona}"},
    ),
    Case(
        "DELETE",
        "/v1/projects/{pid}/app-users/{spare_device}",
        "/v1/projects/<int:project_id>/app-users/<int:app_user_id>",
        statuses(200, allowed=("admin", "manager")),
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/app-users/{spare_device}/reissue",
        "/v1/projects/<int:project_id>/app-users/<int:app_user_id>/reissue",
        statuses(200, allowed=("admin", "manager")),
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/assignments/forms",
        "/v1/projects/<int:project_id>/assignments/forms",
        statuses(200, allowed=("admin", "manager")),
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/forms/coop_diagnostic/assignments",
        "/v1/projects/<int:project_id>/forms/<xml_form_id>/assignments",
        statuses(200, allowed=("admin", "manager")),
        setup="coop",
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/forms/coop_diagnostic/assignments/2/{spare_device}",
        "/v1/projects/<int:project_id>/forms/<xml_form_id>/assignments/<role_id>/<int:actor_id>",
        statuses(200, allowed=("admin", "manager")),
        setup="coop",
    ),
    Case(
        "DELETE",
        "/v1/projects/{pid}/forms/coop_diagnostic/assignments/app-user/{assigned_app_user}",
        "/v1/projects/<int:project_id>/forms/<xml_form_id>/assignments/<role_id>/<int:actor_id>",
        statuses(200, allowed=("admin", "manager")),
        setup="coop_assigned",
    ),
    Case("GET", "/v1/audits", "/v1/audits", statuses(200, allowed=("admin",))),
    Case("GET", "/v1/audits?projectId={pid}", "/v1/audits", statuses(200, allowed=("admin", "manager"))),
    # Exchanging a password for a token needs no prior credential: anyone may try.
    Case(
        "POST",
        "/v1/sessions",
        "/v1/sessions",
        {p: 200 for p in ("anonymous", *EVERYONE)},
        json={"email": "analyst-persona", "password": "correct horse battery"},
    ),
    # A person ends their own session (devices have none: 403; another's token is a 404 for them).
    Case(
        "DELETE",
        "/v1/sessions/{session_token}",
        "/v1/sessions/<token>",
        {"anonymous": 401, "admin": 200, "manager": 404, "coach": 404, "analyst": 200, "outsider": 404, "device": 403},
        setup="analyst_session",
    ),
]


def analyst_id(app: Flask, personas: Personas) -> dict[str, Any]:
    """The analyst persona's user id."""
    return {"analyst_id": personas.analyst.id}


def analyst_session(app: Flask, personas: Personas) -> dict[str, Any]:
    """A fresh API session of the analyst persona."""
    from server.db.models import User
    from server.services import accounts as svc
    from server.store import get_store

    with app.app_context():
        session = get_store().sessions()
        user = session.get(User, personas.analyst.id)
        assert user is not None
        return {"session_token": svc.create_session_token(session, user).token}


def coop(app: Flask, personas: Personas) -> dict[str, Any]:
    """Publish the cooperative diagnostic."""
    publish_form(app, personas.project_id, COOP_XLSX)
    return {}


def coop_assigned(app: Flask, personas: Personas) -> dict[str, Any]:
    """Publish the cooperative diagnostic and assign it to a spare app user."""
    from server.services import accounts as svc
    from server.store import get_store

    publish_form(app, personas.project_id, COOP_XLSX)
    with app.app_context():
        session = get_store().sessions()
        spare = svc.create_app_user(session, personas.project_id, "spare")
        svc.set_app_user_form(session, personas.project_id, "coop_diagnostic", spare.id, True)
    return {"assigned_app_user": spare.id}
