"""Issue 15 row 13: export presets are shared by a project's analysts, so only managers and admins change them.

Rules:
- P1 an analyst can list and use presets but can neither create one nor delete one (a manager's
  included): 403, and the preset is unchanged.
"""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Personas
from tests.server.role_matrix_exports import coop_with_preset


def test_an_analyst_cannot_create_or_delete_presets(client: FlaskClient, app: Flask, personas: Personas) -> None:
    coop_with_preset(app, personas)  # the manager's preset "p"
    base = f"/v1/projects/{personas.project_id}/forms/coop_diagnostic/export-presets"
    analyst = personas.analyst.headers
    created = client.post(base, json={"name": "mine", "options": {"bom": "true"}}, headers=analyst)
    assert created.status_code == 403, created.get_data(as_text=True)
    assert client.delete(f"{base}/p", headers=analyst).status_code == 403
    listed = client.get(base, headers=analyst)
    assert [p["name"] for p in listed.get_json()] == ["p"]
    assert client.get(base.replace("export-presets", "export.zip?preset=p"), headers=analyst).status_code == 200
