"""Every answer of the sync door carries ``"protocol": "fieldsync/2"``, errors included (SYNC.md: a captive
portal's page must never pass for an acknowledgement)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import Personas


@pytest.mark.parametrize(
    ("who", "status"), [("anonymous", 401), ("analyst", 403), ("outsider", 403)], ids=["401", "403-role", "403-project"]
)
def test_refused_push_still_names_the_protocol(client: FlaskClient, personas: Personas, who: str, status: int) -> None:
    headers = {} if who == "anonymous" else personas.all()[who].headers
    response = client.post(f"/v1/projects/{personas.project_id}/sync/push", json={}, headers=headers)
    assert response.status_code == status
    assert response.get_json()["protocol"] == "fieldsync/2"
