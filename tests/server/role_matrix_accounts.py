"""Role matrix rows for projects, users, members, devices, sessions, audits and health."""

from __future__ import annotations

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
        statuses(201, allowed=("admin",)),
        json={"username": "newperson-{persona}", "password": "long enough pw"},
    ),
    Case("GET", "/v1/projects", "/v1/projects", statuses(200, allowed=PEOPLE)),
    Case("POST", "/v1/projects", "/v1/projects", statuses(201, allowed=("admin",)), json={"name": "Projet {persona}"}),
    Case("GET", "/v1/projects/{pid}", "/v1/projects/<int:project_id>", statuses(200, allowed=PROJECT_PEOPLE)),
    Case(
        "GET",
        "/v1/projects/{pid}/members",
        "/v1/projects/<int:project_id>/members",
        statuses(200, allowed=("admin", "manager")),
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/members",
        "/v1/projects/<int:project_id>/members",
        statuses(201, allowed=("admin", "manager")),
        json={"username": "analyst-persona", "role": "analyst"},
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/devices",
        "/v1/projects/<int:project_id>/devices",
        statuses(200, allowed=("admin", "manager")),
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/devices",
        "/v1/projects/<int:project_id>/devices",
        statuses(201, allowed=("admin", "manager")),
        json={"name": "phone {persona}"},
    ),
    Case(
        "DELETE",
        "/v1/projects/{pid}/devices/{spare_device}",
        "/v1/projects/<int:project_id>/devices/<int:device_id>",
        statuses(200, allowed=("admin", "manager")),
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/devices/{spare_device}/reissue",
        "/v1/projects/<int:project_id>/devices/<int:device_id>/reissue",
        statuses(201, allowed=("admin", "manager")),
    ),
    Case("GET", "/v1/audits", "/v1/audits", statuses(200, allowed=("admin",))),
    Case("GET", "/v1/audits?project_id={pid}", "/v1/audits", statuses(200, allowed=("admin", "manager"))),
    # Exchanging a password for a token needs no prior credential: anyone may try.
    Case(
        "POST",
        "/v1/sessions",
        "/v1/sessions",
        {p: 201 for p in ("anonymous", *EVERYONE)},
        json={"username": "analyst-persona", "password": "correct horse battery"},
    ),
]
