"""Role matrix rows for the web console and for the JSON twins of its actions (server/api/console_actions.py).

Console pages authenticate by their own cookie session only: the bearer tokens this matrix sends are
ignored there, so every persona is sent to sign in (302) and every POST without the session's CSRF
token is refused (400) before anything else happens. What each role may do once signed in to the
console is checked by tests/server/console/test_console_roles.py over ``CONSOLE_CASES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.server.fixtures_forms import ENTREPRENEUR_XLSX
from tests.server.role_matrix import PERSONAS, Case, statuses
from tests.server.role_matrix_exports import coop_with_preset, coop_with_run  # noqa: F401  (setups named by the cases)
from tests.server.role_matrix_forms import coop, coop_draft, media_draft  # noqa: F401  (setups named by the cases)
from tests.server.role_matrix_indicators import roles_form_with_indicator  # noqa: F401  (a setup)
from tests.server.role_matrix_refused_submissions import with_refused  # noqa: F401  (a setup named by the cases)
from tests.server.role_matrix_sync import with_entity, with_held_item  # noqa: F401  (setups named by the cases)
from tests.server.role_matrix_webhooks import subscription_with_delivery  # noqa: F401  (a setup)

PEOPLE = ("admin", "manager", "coach", "analyst", "outsider")
READERS = ("admin", "manager", "coach", "analyst")
WRITERS = ("admin", "manager")
INDICATOR_READERS = ("admin", "manager", "analyst")
HOOK = "/projects/{pid}/webhooks/{sub}"
FORM = "/projects/{pid}/forms/coop_diagnostic"
P = "/projects/<int:project_id>"
ENTITY = "/projects/{pid}/entities/entrepreneurs/e1"
EXPORTERS = ("admin", "manager", "analyst")
EXPORTS = f"{FORM}/exports"
EXPORTS_RULE = f"{P}/forms/<xml_form_id>/exports"
HOOK_RULE = f"{P}/webhooks/<int:subscription_id>"


@dataclass(frozen=True)
class ConsoleCase:
    """A console route and the status each signed-in person gets (``data``: the posted form)."""

    method: str
    path: str
    rule: str
    expected: dict[str, int]
    data: dict[str, Any] = field(default_factory=dict)
    setup: str | None = None  # a setup function of tests/server/role_matrix_forms.py
    public: bool = False  # reachable without signing in


def signed_in(ok: int, *, allowed: tuple[str, ...] = PEOPLE, denied: int = 403) -> dict[str, int]:
    """Expected statuses of the signed-in people."""
    return {p: ok if p in allowed else denied for p in PEOPLE}


def _upload() -> dict[str, Any]:
    return {"file": (ENTREPRENEUR_XLSX.read_bytes(), "entrepreneur_followup.xlsx")}


CONSOLE_CASES = [
    ConsoleCase("GET", "/", "/", signed_in(302)),
    ConsoleCase("GET", "/signin", "/signin", signed_in(200), public=True),
    ConsoleCase(
        "POST", "/signin", "/signin", signed_in(401), {"username": "admin-persona", "password": "no"}, public=True
    ),
    ConsoleCase("POST", "/signout", "/signout", signed_in(302)),
    ConsoleCase("POST", "/locale", "/locale", signed_in(302), {"locale": "ar", "next": "/projects"}, public=True),
    ConsoleCase("GET", "/console/static/console.css", "/console/static/<path:filename>", signed_in(200), public=True),
    ConsoleCase("GET", "/account", "/account", signed_in(200)),
    ConsoleCase(
        "POST",
        "/account/password",
        "/account/password",
        signed_in(400),
        {"current_password": "not the password", "new_password": "a long new password"},
    ),
    ConsoleCase("GET", "/projects", "/projects", signed_in(200)),
    ConsoleCase("POST", "/projects", "/projects", signed_in(302, allowed=("admin",)), {"name": "Projet console"}),
    ConsoleCase(
        "POST", "/projects/{pid}/archive", f"{P}/archive", signed_in(302, allowed=("admin",)), {"archived": "true"}
    ),
    ConsoleCase("GET", "/users", "/users", signed_in(200, allowed=("admin",))),
    ConsoleCase(
        "POST",
        "/users",
        "/users",
        signed_in(302, allowed=("admin",)),
        {"username": "new-console-user", "password": "long enough pw"},
    ),
    ConsoleCase("GET", "/audit", "/audit", signed_in(200, allowed=("admin",))),
    ConsoleCase("GET", "/relay", "/relay", signed_in(200, allowed=("admin",))),
    ConsoleCase("GET", "/projects/{pid}/audit", f"{P}/audit", signed_in(200, allowed=WRITERS)),
    ConsoleCase("GET", "/projects/{pid}/entities", f"{P}/entities", signed_in(200, allowed=READERS)),
    ConsoleCase("GET", "/projects/{pid}/forms", f"{P}/forms", signed_in(200, allowed=READERS), setup="coop"),
    ConsoleCase("POST", "/projects/{pid}/forms", f"{P}/forms", signed_in(302, allowed=WRITERS), _upload()),
    # a job of another upload: writers learn it does not exist, the others may not ask
    ConsoleCase(
        "GET", "/projects/{pid}/forms/jobs/999999", f"{P}/forms/jobs/<int:job_id>", signed_in(404, allowed=WRITERS)
    ),
    ConsoleCase("GET", FORM, f"{P}/forms/<xml_form_id>", signed_in(200, allowed=READERS), setup="coop"),
    ConsoleCase(
        "POST",
        f"{FORM}/publish",
        f"{P}/forms/<xml_form_id>/publish",
        signed_in(302, allowed=WRITERS),
        setup="coop_draft",
    ),
    ConsoleCase(
        "POST",
        f"{FORM}/state",
        f"{P}/forms/<xml_form_id>/state",
        signed_in(302, allowed=WRITERS),
        {"state": "closing"},
        setup="coop",
    ),
    ConsoleCase(
        "POST",
        "/projects/{pid}/forms/media_test/media",
        f"{P}/forms/<xml_form_id>/media",
        signed_in(302, allowed=WRITERS),
        {"name": "logo.png", "file": (b"\x89PNG fake", "logo.png")},
        setup="media_draft",
    ),
    ConsoleCase(
        "GET",
        f"{FORM}/versions/2026112901/source",
        f"{P}/forms/<xml_form_id>/versions/<version>/source",
        signed_in(200, allowed=READERS),
        setup="coop",
    ),
    ConsoleCase(
        "GET",
        f"{FORM}/versions/2026112901/xform",
        f"{P}/forms/<xml_form_id>/versions/<version>/xform",
        signed_in(200, allowed=READERS),
        setup="coop",
    ),
    ConsoleCase(
        "GET",
        f"{FORM}/versions/2026112901/preview",
        f"{P}/forms/<xml_form_id>/versions/<version>/preview",
        signed_in(200, allowed=READERS),
        setup="coop",
    ),
    ConsoleCase(
        "GET",
        f"{FORM}/versions/2026112901/preview/frame",
        f"{P}/forms/<xml_form_id>/versions/<version>/preview/frame",
        signed_in(200, allowed=READERS),
        setup="coop",
    ),
    ConsoleCase(
        "GET",
        "/console/assets/vue/vue.runtime.esm-browser.prod.js",
        "/console/assets/<package>/<path:filename>",
        signed_in(200),
        public=True,
    ),
    ConsoleCase(
        "GET",
        "/projects/{pid}/entities/entrepreneurs",
        f"{P}/entities/<list_name>",
        signed_in(200, allowed=READERS),
        setup="with_entity",
    ),
    ConsoleCase(
        "GET",
        f"{ENTITY}",
        f"{P}/entities/<list_name>/<entity_id>",
        signed_in(200, allowed=READERS),
        setup="with_entity",
    ),
    ConsoleCase(
        "POST",
        f"{ENTITY}/delete",
        f"{P}/entities/<list_name>/<entity_id>/delete",
        signed_in(302, allowed=WRITERS),
        {"base_version": "1"},
        setup="with_entity",
    ),
    ConsoleCase(
        "POST",
        f"{ENTITY}/restore",
        f"{P}/entities/<list_name>/<entity_id>/restore",
        signed_in(302, allowed=WRITERS),
        {"base_version": "1"},
        setup="with_entity",
    ),
    ConsoleCase("GET", "/projects/{pid}/conflicts", f"{P}/conflicts", signed_in(200, allowed=READERS)),
    ConsoleCase(
        "POST",
        "/projects/{pid}/conflicts/entrepreneurs/e1/resolve",
        f"{P}/conflicts/<list_name>/<entity_id>/resolve",
        signed_in(302, allowed=WRITERS),
        {"base_version": "1"},
        setup="with_entity",
    ),
    ConsoleCase("GET", "/projects/{pid}/quarantine", f"{P}/quarantine", signed_in(200, allowed=WRITERS)),
    ConsoleCase(
        "GET",
        "/projects/{pid}/quarantine/{held}",
        f"{P}/quarantine/<int:item_id>",
        signed_in(200, allowed=WRITERS),
        setup="with_held_item",
    ),
    ConsoleCase(
        "POST",
        "/projects/{pid}/quarantine/{held}/release",
        f"{P}/quarantine/<int:item_id>/release",
        signed_in(302, allowed=WRITERS),
        setup="with_held_item",
    ),
    ConsoleCase(
        "POST",
        "/projects/{pid}/quarantine/{held}/discard",
        f"{P}/quarantine/<int:item_id>/discard",
        signed_in(302, allowed=WRITERS),
        setup="with_held_item",
    ),
    ConsoleCase("GET", "/projects/{pid}/refused", f"{P}/refused", signed_in(200, allowed=WRITERS)),
    ConsoleCase(
        "GET",
        "/projects/{pid}/refused/{refused_id}",
        f"{P}/refused/<int:refused_id>",
        signed_in(200, allowed=WRITERS),
        setup="with_refused",
    ),
    ConsoleCase(
        "POST",
        "/projects/{pid}/refused/{refused_id}/release",
        f"{P}/refused/<int:refused_id>/release",
        signed_in(302, allowed=WRITERS),
        setup="with_refused",
    ),
    ConsoleCase(
        "POST",
        "/projects/{pid}/refused/{refused_id}/discard",
        f"{P}/refused/<int:refused_id>/discard",
        signed_in(302, allowed=WRITERS),
        setup="with_refused",
    ),
    ConsoleCase(
        "GET",
        "/projects/{pid}/refused/{refused_id}/xml",
        f"{P}/refused/<int:refused_id>/xml",
        signed_in(200, allowed=WRITERS),
        setup="with_refused",
    ),
    ConsoleCase("GET", EXPORTS, EXPORTS_RULE, signed_in(200, allowed=EXPORTERS), setup="coop"),
    ConsoleCase(
        "GET",
        f"{EXPORTS}/download?format=xlsx",
        f"{EXPORTS_RULE}/download",
        signed_in(200, allowed=EXPORTERS),
        setup="coop",
    ),
    ConsoleCase(
        "POST",
        f"{EXPORTS}/presets",
        f"{EXPORTS_RULE}/presets",
        signed_in(302, allowed=WRITERS),
        {"name": "p2"},
        setup="coop",
    ),
    ConsoleCase(
        "POST",
        f"{EXPORTS}/presets/p/delete",
        f"{EXPORTS_RULE}/presets/<name>/delete",
        signed_in(302, allowed=WRITERS),
        setup="coop_with_preset",
    ),
    ConsoleCase(
        "POST",
        f"{EXPORTS}/schedules",
        f"{EXPORTS_RULE}/schedules",
        signed_in(302, allowed=WRITERS),
        {"cron": "0 6 * * *"},
        setup="coop",
    ),
    ConsoleCase(
        "POST",
        f"{EXPORTS}/schedules/{{schedule}}/delete",
        f"{EXPORTS_RULE}/schedules/<int:schedule_id>/delete",
        signed_in(302, allowed=WRITERS),
        setup="coop_with_preset",
    ),
    ConsoleCase(
        "GET",
        f"{EXPORTS}/schedules/{{schedule}}/files/{{file}}",
        f"{EXPORTS_RULE}/schedules/<int:schedule_id>/files/<file_name>",
        signed_in(200, allowed=EXPORTERS),
        setup="coop_with_run",
    ),
    ConsoleCase("GET", "/projects/{pid}/members", f"{P}/members", signed_in(200, allowed=WRITERS)),
    ConsoleCase(
        "POST",
        "/projects/{pid}/members",
        f"{P}/members",
        signed_in(302, allowed=WRITERS),
        {"username": "analyst-persona", "role": "analyst"},
    ),
    ConsoleCase("GET", "/projects/{pid}/phones", f"{P}/phones", signed_in(200, allowed=WRITERS)),
    ConsoleCase(
        "POST", "/projects/{pid}/phones", f"{P}/phones", signed_in(201, allowed=WRITERS), {"name": "Téléphone"}
    ),
    ConsoleCase(
        "POST",
        "/projects/{pid}/phones/{spare_device}/revoke",
        f"{P}/phones/<int:device_id>/revoke",
        signed_in(302, allowed=WRITERS),
    ),
    ConsoleCase(
        "POST",
        "/projects/{pid}/phones/{spare_device}/reissue",
        f"{P}/phones/<int:device_id>/reissue",
        signed_in(201, allowed=WRITERS),
    ),
    ConsoleCase(
        "GET",
        "/projects/{pid}/phones/{spare_device}/forms",
        f"{P}/phones/<int:device_id>/forms",
        signed_in(200, allowed=WRITERS),
    ),
    ConsoleCase(
        "POST",
        "/projects/{pid}/phones/{spare_device}/forms",
        f"{P}/phones/<int:device_id>/forms",
        signed_in(302, allowed=WRITERS),
        {"forms": "coop_diagnostic"},
        setup="coop",
    ),
]

_INDICATOR = "roles_form_with_indicator"


def _hook(method: str, path: str, rule: str, ok: int, data: dict[str, Any] | None = None) -> ConsoleCase:
    """A route of one webhook subscription (made by the setup; managers and admins)."""
    return ConsoleCase(
        method, HOOK + path, HOOK_RULE + rule, signed_in(ok, allowed=WRITERS), data or {}, "subscription_with_delivery"
    )


CONSOLE_CASES += [
    ConsoleCase(
        "GET",
        "/projects/{pid}/dashboard",
        f"{P}/dashboard",
        signed_in(200, allowed=INDICATOR_READERS),
        setup=_INDICATOR,
    ),
    ConsoleCase(
        "GET",
        "/projects/{pid}/dashboard/n",
        f"{P}/dashboard/<name>",
        signed_in(200, allowed=INDICATOR_READERS),
        setup=_INDICATOR,
    ),
    ConsoleCase(
        "GET",
        "/projects/{pid}/dashboard/n/figures.csv",
        f"{P}/dashboard/<name>/figures.csv",
        signed_in(200, allowed=INDICATOR_READERS),
        setup=_INDICATOR,
    ),
    ConsoleCase("GET", "/projects/{pid}/indicators/new", f"{P}/indicators/new", signed_in(200, allowed=WRITERS)),
    ConsoleCase(
        "GET",
        "/projects/{pid}/indicators/n/edit",
        f"{P}/indicators/<name>/edit",
        signed_in(200, allowed=WRITERS),
        setup=_INDICATOR,
    ),
    ConsoleCase(
        "POST",
        "/projects/{pid}/indicators",
        f"{P}/indicators",
        signed_in(302, allowed=WRITERS),
        {
            "name": "n",
            "title_en": "Beneficiaries",
            "target": "10",
            "count_received": "true",
            "definition": '{"source": {"form": "roles"}, "measure": {"kind": "count"}}',
        },
        setup=_INDICATOR,
    ),
    ConsoleCase(
        "POST",
        "/projects/{pid}/indicators/n/remove",
        f"{P}/indicators/<name>/remove",
        signed_in(302, allowed=WRITERS),
        setup=_INDICATOR,
    ),
    ConsoleCase("GET", "/projects/{pid}/webhooks", f"{P}/webhooks", signed_in(200, allowed=WRITERS)),
    ConsoleCase(
        "POST",
        "/projects/{pid}/webhooks",
        f"{P}/webhooks",
        signed_in(201, allowed=WRITERS),
        {"url": "https://hooks.example.org/console", "events": "form.published"},
    ),
    _hook("GET", "", "", 200),
    _hook("POST", "", "", 302, {"url": "https://hooks.example.org/renamed", "events": "form.published", "name": "CRM"}),
    _hook("POST", "/pause", "/<any(pause, resume):action>", 302),
    _hook("POST", "/resume", "/<any(pause, resume):action>", 302),
    _hook("POST", "/rotate-secret", "/rotate-secret", 200),
    _hook("POST", "/delete", "/delete", 302),
    _hook("POST", "/replay", "/replay", 302, {"event_id": "{event}"}),
]


def with_api_credentials(case: ConsoleCase) -> Case:
    """What a persona gets on a console route with only the API's credentials: sign in, or no CSRF token."""
    if case.method == "POST":
        expected = {p: 400 for p in PERSONAS}
    elif case.public:
        expected = {p: 200 for p in PERSONAS}
    else:
        expected = {p: 302 for p in PERSONAS}
    return Case(case.method, case.path, case.rule, expected, setup=case.setup)


CASES = [with_api_credentials(c) for c in CONSOLE_CASES]
CASES += [
    Case(
        "PATCH",
        "/v1/projects/{pid}",
        "/v1/projects/<int:project_id>",
        statuses(200, allowed=("admin",)),
        json={"archived": False},
    ),
    # A wrong current password: people get 400 (the password is checked), devices 403.
    Case(
        "POST",
        "/v1/users/current/password",
        "/v1/users/current/password",
        statuses(400, allowed=PEOPLE),
        json={"currentPassword": "not it", "newPassword": "a long new password"},
    ),
    Case("PATCH", "/v1/users/current", "/v1/users/current", statuses(200, allowed=PEOPLE), json={"locale": "ar"}),
    Case(
        "GET",
        "/v1/projects/{pid}/forms/coop_diagnostic/versions/2026112901/xform",
        "/v1/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>/xform",
        statuses(200, allowed=("admin", "manager", "coach", "analyst", "device")),
        setup="coop",
    ),
]
