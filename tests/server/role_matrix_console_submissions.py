"""Role matrix rows for the console's submissions pages (table, map, one submission, review, files) and
the JSON API's comments of a submission (ODK Central's path)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import Personas
from tests.server.role_matrix import Case, statuses
from tests.server.role_matrix_console import WRITERS, ConsoleCase, signed_in, with_api_credentials

READERS = ("admin", "manager", "analyst")  # submission.read: coaches send, they do not read
SUBS = "/projects/{pid}/forms/coop_diagnostic/submissions"
RULE = "/projects/<int:project_id>/forms/<xml_form_id>/submissions"
ONE = SUBS + "/uuid:1765513a-04a4-40e1-bacd-dae53ee2ede4"


def coop_submissions(app: Flask, personas: Personas) -> dict[str, Any]:
    """The cooperative diagnostic with its three example submissions (one photo, one edit)."""
    from tests.server.console.test_console_submissions import seed_coop

    seed_coop(app, personas)
    return {}


def _case(
    method: str, path: str, rule: str, expected: dict[str, int], data: dict[str, Any] | None = None
) -> ConsoleCase:
    return ConsoleCase(method, path, rule, expected, data or {}, setup="coop_submissions")


CONSOLE_CASES = [
    _case("GET", SUBS + "?filter.location/region=souss_massa", RULE, signed_in(200, allowed=READERS)),
    _case("POST", SUBS + "/columns", RULE + "/columns", signed_in(302, allowed=READERS), {"paths": "location/region"}),
    _case("GET", SUBS + "/map", RULE + "/map", signed_in(200, allowed=READERS)),
    _case("GET", ONE, RULE + "/<instance_id>", signed_in(200, allowed=READERS)),
    _case(
        "POST",
        ONE + "/review",
        RULE + "/<instance_id>/review",
        signed_in(302, allowed=WRITERS),
        {"review_state": "has_issues", "comment": "à vérifier"},
    ),
    _case(
        "GET", ONE + "/files/1796200361318.jpg", RULE + "/<instance_id>/files/<name>", signed_in(200, allowed=READERS)
    ),
]

CASES = [with_api_credentials(c) for c in CONSOLE_CASES]
CASES += [
    Case(
        "GET",
        "/v1" + ONE + "/comments",
        "/v1" + RULE + "/<instance_id>/comments",
        statuses(200, allowed=READERS),
        setup="coop_submissions",
    ),
    Case(
        "POST",
        "/v1" + ONE + "/comments",
        "/v1" + RULE + "/<instance_id>/comments",
        statuses(200, allowed=WRITERS),
        json={"body": "à vérifier"},
        setup="coop_submissions",
    ),
]
