"""Every endpoint × every persona → the expected status (401 without credentials, 403 without the role)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import tests.server as server_tests
from tests.conftest import Personas
from tests.server.role_matrix import PERSONAS, Case


def _all_cases() -> list[tuple[str, Case]]:
    cases: list[tuple[str, Case]] = []
    for module in pkgutil.iter_modules(server_tests.__path__):
        if module.name.startswith("role_matrix_"):
            area = importlib.import_module(f"tests.server.{module.name}")
            cases.extend((module.name.removeprefix("role_matrix_"), case) for case in area.CASES)
    return cases


CASES = _all_cases()


def _headers(personas: Personas, persona: str) -> dict[str, str]:
    if persona == "anonymous":
        return {}
    return dict(personas.all()[persona].headers)


def _fill(text: str, personas: Personas, persona: str, extra: dict[str, Any]) -> str:
    return text.format(
        pid=personas.project_id, other=personas.other_project_id, token=personas.device.token, persona=persona, **extra
    )


def prepare(app: Flask, personas: Personas, area: str, case: Case, persona: str) -> tuple[str, dict[str, Any] | None]:
    """Run the case's setup; return its path and JSON body filled for ``persona``."""
    extra: dict[str, Any] = {}
    if case.setup:
        module = importlib.import_module(f"tests.server.role_matrix_{area}")
        extra = getattr(module, case.setup)(app, personas) or {}
    if "{spare_device}" in case.path:
        from server.services import accounts as svc
        from server.store import get_store

        with app.app_context():
            extra["spare_device"] = svc.create_device(get_store().sessions(), personas.project_id, "spare").id
    path = _fill(case.path, personas, persona, extra)
    body = None
    if case.json is not None:
        body = {k: _fill(v, personas, persona, extra) if isinstance(v, str) else v for k, v in case.json.items()}
    return path, body


@pytest.mark.parametrize(("area", "case"), CASES, ids=[f"{a}:{c.method} {c.path}" for a, c in CASES])
@pytest.mark.parametrize("persona", PERSONAS)
def test_role_matrix(client: FlaskClient, app: Flask, personas: Personas, area: str, case: Case, persona: str) -> None:
    path, body = prepare(app, personas, area, case, persona)
    response = client.open(path, method=case.method, json=body, headers=_headers(personas, persona), **case.kwargs)
    assert response.status_code == case.expected[persona], response.get_data(as_text=True)[:300]
    if response.status_code in (401, 403) and response.mimetype == "application/json":
        body = response.get_json()
        assert {"code", "message", "details"} <= set(body)
        assert set(body) - {"code", "message", "details"} <= {"protocol"}  # sync routes add fieldsync/2


def test_every_endpoint_is_in_the_matrix(app: Flask) -> None:
    covered = {case.rule for _, case in CASES}
    rules = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    missing = sorted(rules - covered)
    assert not missing, f"endpoints without a role-matrix row: {missing}"
