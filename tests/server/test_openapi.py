"""The API reference (issue 13, point 4): ``/v1/openapi.json`` is a valid OpenAPI 3.1 document generated
from the handlers' schemas, it lists every JSON endpoint, body, parameter, allowed value and error, and
``/docs`` shows it with assets served by Fieldsync itself (no internet needed).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate as validate_openapi

from server.api.openapi import SWAGGER_UI_DIR

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)  # raises on any violation of the 3.1 schema


def test_every_json_api_rule_is_in_the_document(app: Flask, document: dict[str, Any]) -> None:
    expected = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/") or rule.endpoint.startswith("openrosa."):
            continue
        if rule.endpoint == "reference.openapi_document":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        methods = set(rule.methods or ()) - {"OPTIONS"} if rule.provide_automatic_options else set(rule.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")
        expected |= {(path, m.lower()) for m in methods}
    documented = {(path, method) for path, method, _ in _operations(document)}
    assert expected - documented == set()
    assert len(expected) > 40


def _parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    for parameter in document["paths"][path][method]["parameters"]:
        if parameter["name"] == name:
            return dict(parameter["schema"])
    raise AssertionError(f"{method} {path} has no parameter {name}")


def _property(document: dict[str, Any], component: str, name: str) -> dict[str, Any]:
    return dict(document["components"]["schemas"][component]["properties"][name])


FORM = "/v1/projects/{project_id}/forms/{xml_form_id}"


def test_allowed_values_are_listed(document: dict[str, Any]) -> None:
    export = f"{FORM}/export.{{fmt}}"
    assert _parameter(document, export, "get", "labels")["enum"] == ["labels", "values"]
    assert _parameter(document, export, "get", "headers")["enum"] == ["labels", "names"]
    assert _parameter(document, export, "get", "fmt")["enum"] == ["geojson", "xlsx", "zip"]
    assert set(_parameter(document, export, "get", "reviewState")["items"]["enum"]) >= {"hasIssues", "approved"}
    listing = f"{FORM}/submissions"
    # a comma-separated list of states since the submissions table: the enum is on its items
    assert set(_parameter(document, listing, "get", "reviewState")["items"]["enum"]) >= {"hasIssues", "null"}
    answer = document["paths"][listing]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"]["type"] == "array"
    assert {"X-Total-Count", "Link"} <= set(answer["headers"])
    create = document["paths"][listing]["post"]["requestBody"]["content"]
    assert {"application/xml", "multipart/form-data"} <= set(create)
    assert _property(document, "StatePatch", "state")["enum"] == ["open", "closing", "closed"]
    assert _property(document, "RoleOut", "system")["type"] == "string"
    assert _property(document, "ScheduleIn", "format")["enum"] == ["zip", "xlsx", "geojson"]


def test_request_bodies_are_described(document: dict[str, Any]) -> None:
    sessions = document["paths"]["/v1/sessions"]["post"]
    assert sessions["security"] == []  # no credentials needed to get a token
    assert set(document["components"]["schemas"]["SessionIn"]["required"]) == {"email", "password"}
    assert document["components"]["schemas"]["ProjectIn"]["additionalProperties"] is False
    upload = document["paths"]["/v1/projects/{project_id}/forms"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert _property(document, "FormVersionOut", "xmlFormId")["type"] == "string"  # the id URLs use
    push = document["paths"]["/v1/projects/{project_id}/sync/push"]["post"]
    assert push["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PushIn"}


def test_every_operation_documents_its_errors_in_the_one_shape(document: dict[str, Any]) -> None:
    error = {"$ref": "#/components/schemas/ErrorOut"}
    assert set(document["components"]["schemas"]["ErrorOut"]["required"]) == {"code", "message", "details"}
    for path, method, op in _operations(document):
        statuses = {int(s) for s in op["responses"]}
        assert 503 in statuses, (method, path)
        if op.get("security") != []:
            assert {401, 403} <= statuses, (method, path)
        if "{" in path:
            assert 404 in statuses, (method, path)
        for status, response in op["responses"].items():
            if int(status) >= 400 and path not in ("/healthz", "/healthz/ready"):
                assert response["content"]["application/json"]["schema"] == error, (method, path, status)


def test_both_credentials_are_documented(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["basic"] == {"type": "http", "scheme": "basic"}
    assert schemes["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"basic": []}, {"bearer": []}]


@pytest.mark.skipif(not SWAGGER_UI_DIR.is_dir(), reason="node_modules/swagger-ui-dist is absent: run make install")
def test_the_reference_page_needs_no_internet(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "//" not in re.sub(r"<!doctype[^>]*>", "", html, flags=re.I)  # no absolute URL: no CDN
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/docs/assets/swagger-ui-bundle.js" in assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and response.get_data(), asset
    script = client.get("/docs/reference.js").get_data(as_text=True)
    assert '"/v1/openapi.json"' in script


@pytest.mark.parametrize(
    "name", ["index.html", "package.json", "..%2Fpackage.json", "swagger-ui.js.map"], ids=lambda n: n
)
def test_only_the_page_s_assets_are_served(client: FlaskClient, name: str) -> None:
    assert client.get(f"/docs/assets/{name}").status_code == 404


def test_a_handler_cannot_load_a_schema_its_contract_does_not_name() -> None:
    from server.api.contract import documented
    from server.api.schemas import ProjectIn, UserIn
    from server.api.wire import load_json

    app = Flask(__name__)
    app.testing = True  # the error propagates to the test

    @app.post("/drifted")
    @documented({201: None}, body=ProjectIn)
    def drifted() -> tuple[str, int]:
        load_json(UserIn())
        return "", 201

    with pytest.raises(RuntimeError, match="loads UserIn as its body but documents another"):
        app.test_client().post("/drifted", json={"username": "x", "password": "y" * 12})


def test_the_export_options_documented_are_the_ones_the_parser_takes() -> None:
    from marshmallow import fields

    from exports.options import ExportOptionError, options_from_query
    from server.api.exports import ExportQuery
    from server.services.exports import NOT_OPTIONS

    for name, field in ExportQuery().fields.items():
        if name in NOT_OPTIONS:
            continue
        validators = getattr(field.inner if isinstance(field, fields.List) else field, "validators", [])
        choices = [v.choices for v in validators if hasattr(v, "choices")]
        sample = (
            "true"
            if isinstance(field, fields.Boolean)
            else sorted(choices[0])[0]
            if choices
            else "2026-01-01"
            if name in ("since", "until")
            else "x"
        )
        try:
            options_from_query({name: sample})
        except ExportOptionError as exc:
            assert "unknown export option" not in exc.message, name
    with pytest.raises(ExportOptionError, match="unknown export option"):
        options_from_query({"not_an_option": "x"})
