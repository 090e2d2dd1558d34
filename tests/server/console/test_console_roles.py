"""The console's role matrix: each person, signed in with a console session, on every console route.

The statuses are the JSON API's decisions (the console calls the same ``require``): 403 for a role
without the permission, 302 (POST-redirect-GET) or 201 (a phone's QR code, shown once) for success.
Every case runs in its own savepoint, so cases never see each other's changes.
"""

from __future__ import annotations

import importlib
import io
import pkgutil
import re
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import tests.server as server_tests
from tests.conftest import PERSONA_PASSWORD, Backend, Personas
from tests.server import role_matrix_forms
from tests.server.role_matrix_console import PEOPLE, ConsoleCase


def _console_cases() -> list[tuple[ModuleType, ConsoleCase]]:
    """Every ``CONSOLE_CASES`` of the ``tests/server/role_matrix_console*`` modules, with its module (setups)."""
    cases = []
    for found in pkgutil.iter_modules(server_tests.__path__):
        if found.name.startswith("role_matrix_console"):
            module = importlib.import_module(f"tests.server.{found.name}")
            cases.extend((module, case) for case in module.CONSOLE_CASES)
    return cases


CONSOLE_CASES = _console_cases()


def page_csrf(client: FlaskClient, path: str) -> str:
    """The CSRF token in the forms of a page."""
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert token is not None
    return token.group(1)


def sign_in(client: FlaskClient, username: str, password: str = PERSONA_PASSWORD) -> str:
    """Sign in through the form as a browser does; return the signed-in session's CSRF token."""
    before = page_csrf(client, "/signin")
    response = client.post("/signin", data={"csrf_token": before, "username": username, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    after = page_csrf(client, "/account")
    assert after != before  # signing in starts a new session: a token seen before it is worth nothing
    return after


def _form_data(case: ConsoleCase, csrf: str, extra: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"csrf_token": csrf}
    for key, value in case.data.items():
        data[key] = (io.BytesIO(value[0]), value[1]) if isinstance(value, tuple) else value
        if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in extra:
            data[key] = str(extra[value[1:-1]])  # an id the case's setup made, e.g. {event}
    return data


@pytest.mark.parametrize("persona", PEOPLE)
def test_console_role_matrix(
    app: Flask, client: FlaskClient, personas: Personas, backend: Backend, persona: str
) -> None:
    from server.services import accounts as svc
    from server.store import get_store

    csrf = sign_in(client, f"{persona}-persona")
    with client.session_transaction() as saved:
        cookie_session = dict(saved)
    wrong = []
    for module, case in CONSOLE_CASES:
        nested = backend.connection.begin_nested()
        try:
            with client.session_transaction() as current:
                current.clear()
                current.update(cookie_session)
            extra: dict[str, Any] = {}
            if case.setup:
                setup = getattr(module, case.setup, None) or getattr(role_matrix_forms, case.setup)
                extra.update(setup(app, personas) or {})
            if "{spare_device}" in case.path:
                with app.app_context():
                    extra["spare_device"] = svc.create_device(get_store().sessions(), personas.project_id, "spare").id
            path = case.path.format(pid=personas.project_id, **extra)
            if case.method == "POST":
                response = client.post(path, data=_form_data(case, csrf, extra), content_type="multipart/form-data")
            else:
                response = client.get(path)
            if response.status_code != case.expected[persona]:
                wrong.append(f"{case.method} {case.path}: {response.status_code} != {case.expected[persona]}")
        finally:
            nested.rollback()
    assert not wrong, "\n".join(wrong)
