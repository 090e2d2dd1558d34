"""Requests that answered 500 (issue 15, row 9) answer a clear 4xx and store nothing.

Rules: a body the WSGI server cannot read (chunk size line ``zz``) is a 400 on every endpoint; JSON
nested deeper than ``MAX_JSON_DEPTH`` or holding a lone surrogate is a 400 at both JSON doors; an id
beyond the stores' 64 bits is a 404 in a URL and a 400 in a query, a tus metadata or an export option;
a NUL character (which PostgreSQL cannot store) is a 400 wherever a client can put one.
"""

from __future__ import annotations

import base64
import hashlib
import io
from types import SimpleNamespace
from typing import Any

import pytest
from flask.testing import FlaskClient
from gunicorn.http.body import Body, ChunkedReader
from gunicorn.http.unreader import IterUnreader
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.serving import DechunkedInput

from tests.conftest import Personas
from tests.server.fixtures_forms import PublishedForm, published_coop  # noqa: F401  (fixture)

HUGE = "103661007264632242176"  # 21 digits: beyond a signed 64-bit key
MAX_ID = 2**63 - 1


def _projects(session: Session) -> int:
    from server.db.models import Project

    return int(session.scalar(select(func.count()).select_from(Project)) or 0)


def _push(items: list[Any] | str) -> str:
    inner = items if isinstance(items, str) else str(items)
    return '{"protocol":"fieldsync/2","deviceId":"d1","batchId":"b1","items":' + inner + "}"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/projects",
        "/v1/projects/{pid}/sync/push",
        "/v1/projects/{pid}/blobs/missing",
        "/v1/projects/{pid}/forms",
        "/v1/uploads",
        "/v1/projects/{pid}/submission",
    ],
    ids=["json-api", "push", "blobs-missing", "form-upload", "tus-create", "openrosa-submission"],
)
@pytest.mark.parametrize("server", ["gunicorn", "werkzeug"])
def test_a_malformed_chunked_body_is_a_400(client: FlaskClient, personas: Personas, path: str, server: str) -> None:
    # The body as each WSGI server hands it to the app: its own chunked decoder over the raw bytes.
    raw = b"zz\r\n{}\r\n0\r\n\r\n"
    reader: Any
    if server == "gunicorn":
        reader = Body(ChunkedReader(SimpleNamespace(trailers=[]), IterUnreader([raw])))
    else:
        reader = DechunkedInput(io.BytesIO(raw))
    environ = {
        "wsgi.input": reader,
        "wsgi.input_terminated": True,
        "HTTP_TRANSFER_ENCODING": "chunked",
    }
    headers = {**personas.admin.basic, "Upload-Length": "10", "Content-Type": "application/json"}
    response = client.post(path.format(pid=personas.project_id), headers=headers, environ_overrides=environ)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, '{"a":' * 100 + "1" + "}" * 100, _push('[{"x":' + "[" * 200 + "]" * 200 + "}]")],
    ids=["100k-brackets", "100-nested-objects", "deep-item"],
)
@pytest.mark.parametrize("door", ["json-api", "push"])
def test_deeply_nested_json_is_a_400(
    client: FlaskClient, personas: Personas, session: Session, body: str, door: str
) -> None:
    before = _projects(session)
    path = "/v1/projects" if door == "json-api" else f"/v1/projects/{personas.project_id}/sync/push"
    response = client.post(path, data=body, content_type="application/json", headers=personas.admin.headers)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "nest deeper" in response.get_json()["message"] or door == "json-api"
    assert _projects(session) == before


@pytest.mark.parametrize(
    "body",
    [
        _push('[{"type":"submission","instanceId":"uuid:1","formId":"f","formVersion":"1","data":{"name":"\\ud800"}}]'),
        _push('[{"type":"entity","opId":"\\udc00"}]'),
    ],
    ids=["in-submission-data", "in-entity-op"],
)
def test_a_lone_surrogate_in_push_json_is_a_400(client: FlaskClient, personas: Personas, body: str) -> None:
    response = client.post(
        f"/v1/projects/{personas.project_id}/sync/push",
        data=body,
        content_type="application/json",
        headers=personas.admin.headers,
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "surrogate" in response.get_json()["message"]
    listed = client.get(f"/v1/projects/{personas.project_id}/quarantine", headers=personas.admin.headers)
    assert listed.get_json() == []  # nothing held either


def test_a_lone_surrogate_in_a_json_api_body_is_a_400(
    client: FlaskClient, personas: Personas, session: Session
) -> None:
    before = _projects(session)
    response = client.post(
        "/v1/projects", data='{"name": "x\\ud800"}', content_type="application/json", headers=personas.admin.headers
    )
    assert response.status_code == 400 and "surrogate" in response.get_json()["message"]
    assert _projects(session) == before


def test_an_emoji_written_as_a_surrogate_pair_is_text(client: FlaskClient, personas: Personas) -> None:
    response = client.post(
        "/v1/projects",
        data='{"name": "\\ud83c\\udf31 Tifawin"}',
        content_type="application/json",
        headers=personas.admin.headers,
    )
    assert response.status_code == 200 and response.get_json()["name"] == "\N{SEEDLING} Tifawin"


@pytest.mark.parametrize("project", ["1" * 30, HUGE, "١٢"], ids=["30-digits", "21-digits", "arabic-digits"])
def test_a_tus_project_beyond_the_id_range_is_a_400(client: FlaskClient, personas: Personas, project: str) -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    sha = hashlib.sha256(b"0123456789").hexdigest()
    response = client.post(
        "/v1/uploads",
        headers={
            **personas.admin.headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "10",
            "Upload-Metadata": f"sha256 {b64(sha)},project {b64(project)}",
        },
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["details"]["problem"] == "bad_upload_metadata"


@pytest.mark.parametrize("separator", ["\x00", "\t", "\x1b"], ids=["nul", "tab", "escape"])
def test_an_export_separator_with_a_control_character_is_a_400(
    client: FlaskClient,
    personas: Personas,
    published_coop: PublishedForm,  # noqa: F811
    separator: str,
) -> None:
    response = client.get(
        f"/v1/projects/{personas.project_id}/forms/{published_coop.xml_form_id}/export.xlsx",
        query_string={"separator": separator},
        headers=personas.admin.headers,
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "separator" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v1/projects/{HUGE}"),
        ("GET", f"/v1/projects/{HUGE}/sync/pull"),
        ("GET", f"/v1/projects/{HUGE}/datasets/people/integrity"),
        ("GET", "/v1/key/{token}/projects/" + HUGE + "/datasets/people/integrity"),
        ("POST", f"/v1/projects/{HUGE}/forms/f/draft/attachments/photo.jpg"),
        ("DELETE", "/v1/projects/{pid}/app-users/" + HUGE),
        ("POST", "/v1/projects/{pid}/quarantine/" + HUGE + "/release"),
        # Found by schemathesis: 405, because another method's rule matched the same path.
        ("POST", "/v1/projects/10000000000000000001/app-users"),
        ("POST", f"/v1/projects/{MAX_ID + 1}/assignments/3/1"),
    ],
    ids=[
        "project",
        "pull",
        "integrity",
        "integrity-key",
        "form-attachment",
        "device",
        "quarantine-item",
        "20-digit-project-beside-a-get",
        "just-beyond-beside-a-get",
    ],
)
def test_an_id_beyond_64_bits_in_a_url_is_a_404(
    client: FlaskClient, personas: Personas, method: str, path: str
) -> None:
    url = path.format(pid=personas.project_id, token=personas.device.token)
    response = client.open(url, method=method, data=b"x", headers=personas.admin.headers)
    assert response.status_code == 404, response.get_data(as_text=True)[:300]


@pytest.mark.parametrize(
    "url",
    [
        f"/v1/audits?project_id={HUGE}",
        f"/v1/audits?before_id={HUGE}",
        "/v1/projects/{pid}/quarantine?after_id=" + HUGE,
    ],
    ids=["audit-project", "audit-before", "quarantine-after"],
)
def test_an_id_beyond_64_bits_in_a_query_is_a_400(client: FlaskClient, personas: Personas, url: str) -> None:
    response = client.get(url.format(pid=personas.project_id), headers=personas.admin.headers)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["details"]["problem"] == "invalid_input"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("method", "url", "extra"),
    [
        ("GET", "/v1/projects/{pid}/forms/a%00b", {}),
        ("GET", "/v1/projects/{pid}/entities/a%00b", {}),
        ("GET", "/v1/audits?action=a%00b", {}),
        ("HEAD", "/v1/uploads/a%00b", {}),
        ("GET", "/v1/key/a%00b/projects/{pid}/formList", {"anonymous": True}),
        ("GET", "/v1/projects", {"headers": {"Authorization": "Basic " + _b64("a\x00b:x")}}),
        ("POST", "/v1/projects", {"json": {"name": "a\x00b"}}),
        ("POST", "/v1/sessions", {"json": {"email": "a\x00b", "password": "x"}, "anonymous": True}),
        ("POST", "/v1/projects/{pid}/sync/push", {"data": _push('[{"type": "entity", "opId": "a\\u0000"}]')}),
        (
            "POST",
            "/v1/uploads",
            {
                "headers": {
                    "Upload-Length": "1",
                    "Upload-Metadata": "sha256 " + _b64("0" * 64) + ",filetype " + _b64("x\x00"),
                }
            },
        ),
    ],
    ids=[
        "path",
        "entity-list",
        "query",
        "tus-id",
        "device-key",
        "basic-username",
        "json-body",
        "login",
        "push",
        "tus-meta",
    ],
)
def test_a_nul_character_is_a_400_on_both_stores(
    client: FlaskClient, personas: Personas, method: str, url: str, extra: dict[str, Any]
) -> None:
    headers = {} if extra.get("anonymous") else dict(personas.admin.headers)
    headers.update(extra.get("headers", {}))
    response = client.open(
        url.format(pid=personas.project_id),
        method=method,
        headers=headers,
        json=extra.get("json"),
        data=extra.get("data"),
        content_type="application/json" if "data" in extra else None,
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:300]


@pytest.mark.parametrize(
    ("method", "path", "extra"),
    [
        ("POST", "/v1/projects/{missing}/sync/push", {"data": _push("[]")}),
        ("GET", "/v1/projects/{missing}/sync/pull", {}),
        (
            "POST",
            "/v1/uploads?project={missing}",
            {"headers": {"Upload-Length": "1", "Upload-Metadata": "sha256 " + _b64("0" * 64)}},
        ),
    ],
    ids=["push", "pull", "tus-create"],
)
def test_an_admin_naming_a_project_that_does_not_exist_gets_a_404(
    client: FlaskClient, personas: Personas, method: str, path: str, extra: dict[str, Any]
) -> None:
    # Found by schemathesis: the batch row's foreign key refused the id (a 500).
    headers = {**personas.admin.headers, **extra.get("headers", {})}
    url = path.format(missing=personas.other_project_id + 10_000)
    response = client.open(url, method=method, headers=headers, data=extra.get("data"), content_type="application/json")
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
