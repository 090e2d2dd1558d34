"""The README's request bodies by example stay true: each ``curl -X POST/PATCH ... -d '{...}'`` is accepted.

Rule: README-1 every JSON body of the README's "Request bodies by example" answers 2xx on its URL
(project 1 is the personas' project; sign-in uses a persona's name and password; the review runs on
a stored submission).
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PERSONA_PASSWORD, REPO, Personas
from tests.server.fixtures_forms import COOP_XLSX, publish_form
from tests.server.test_submissions_support import example_submission, post_submission

_CALL = re.compile(r"curl -s -X (POST|PATCH) \"?\$S(/v1/[^\s\"]+)\"?.* -d '(\{.*\})'")


def _examples() -> list[tuple[str, str, dict[str, Any]]]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Request bodies by example", 1)[1].split("\n```\n", 1)[0]
    commands = section.replace("\\\n", " ").splitlines()  # one shell command a line
    return [(m[1], m[2], json.loads(m[3])) for m in map(_CALL.search, commands) if m is not None]


def test_the_readme_bodies_are_accepted(app: Flask, client: FlaskClient, personas: Personas) -> None:
    examples = _examples()
    assert [method for method, _, _ in examples] == ["POST"] * 4 + ["PATCH"]  # sign in ... review
    publish_form(app, personas.project_id, COOP_XLSX.read_bytes(), COOP_XLSX.name)
    xml = example_submission("coop_diagnostic", "02")
    assert post_submission(client, personas.collect_prefix, xml).status_code == 201
    instance_id = re.search(rb"<instanceID>([^<]+)</instanceID>", xml)
    assert instance_id is not None
    for method, path, body in examples:
        path = path.replace("/projects/1/", f"/projects/{personas.project_id}/").replace(
            "$IID", instance_id.group(1).decode()
        )
        if path == "/v1/sessions":
            body = {**body, "email": "admin-persona", "password": PERSONA_PASSWORD}
        response = client.open(path, method=method, json=body, headers=personas.admin.headers)
        assert response.status_code in (200, 201), (path, response.get_data(as_text=True)[:300])
