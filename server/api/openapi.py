"""The API reference: ``GET /v1/openapi.json`` (OpenAPI 3.1, generated) and ``GET /docs`` (Swagger UI).

The document is built by apispec from the app's URL map and the :mod:`server.api.contract` of each
handler: its paths and path parameters come from the URL rules, its bodies, query parameters, allowed
values and answers from the marshmallow schemas the handlers load and dump. Nothing in it is written by
hand but the prose. OpenRosa routes (``server/openrosa/``, ODK Collect's XML protocol) are left out:
they follow the OpenRosa specification, not this document.

``/docs`` serves Swagger UI from the npm package ``swagger-ui-dist`` installed in ``node_modules/`` by
``make install`` (no CDN: the page works on an office network without internet).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Blueprint, Flask, Response, current_app, send_from_directory
from marshmallow import Schema, fields, validate
from werkzeug.routing import AnyConverter, IntegerConverter, Rule

from server.api.contract import Answer, Contract, ListOf, contract_of, documented
from server.config import PROJECT_ROOT
from server.errors import ApiError
from sync.batches import PROTOCOL

bp = Blueprint("reference", __name__)

SWAGGER_UI_DIR = PROJECT_ROOT / "node_modules" / "swagger-ui-dist"
SWAGGER_UI_FILES = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"}
)
DOCUMENT_PATH = "/v1/openapi.json"

DESCRIPTION = """\
The JSON API of Fieldsync, an offline-first OpenRosa sync server.

**Authentication.** Every endpoint but `POST /v1/sessions` and this reference needs credentials:
HTTP Basic with a username and password, or `Authorization: Bearer <token>` with a session token
from `POST /v1/sessions` (24 hours) or a device token from `POST /v1/projects/{project_id}/devices`.
A missing or wrong credential is `401`; a role that lacks the permission is `403`.

**Conventions** are ODK Central's: camelCase fields, lists as bare JSON arrays with `X-Total-Count`,
`X-Extended-Metadata: true` for the extended forms of a resource.

**Errors** always have the shape `{"code", "message", "details"}`: `code` is Central's numeric problem
code (`404.1`; its whole part is the HTTP status), `message` is for people, `details` names what was
wrong (`details.fields` for invalid input) and `details.problem` is Fieldsync's stable machine name.
The sync endpoints add `"protocol": "fieldsync/2"` (SYNC.md's protocol with camelCase keys).

**ODK Collect** talks OpenRosa XML on `/v1/key/{token}/projects/{project_id}/…` and
`/v1/projects/{project_id}/formList`, `…/submission`, `…/forms/{xml_form_id}.xml`, `…/manifest`,
`…/attachments/{name}` (GET) and `…/datasets/{list_name}/integrity`: those routes follow the OpenRosa
specification and are not described here.
"""

_ERROR_TEXT = {
    400: "The request is malformed or invalid; `details` names the problem",
    401: "No credentials, or wrong ones",
    403: "The caller's role does not allow this",
    404: "Not found (or not visible to the caller)",
    409: "Conflicts with the current state (`details` says which)",
    413: "The body is larger than the limit (`details.limitBytes`)",
    415: "Wrong Content-Type",
    422: "Well-formed but refused (for push: the Idempotency-Key was used for another body)",
    426: "The client speaks a protocol this server does not",
    503: "The database is unavailable (nothing was stored); retry after `Retry-After` seconds",
}
_URL_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_RST_LITERAL = re.compile(r"``([^`]+)``")


class ErrorOut(Schema):
    """The one error shape of the JSON API (``server/errors.py``)."""

    code = fields.Float(required=True, metadata={"description": "ODK Central's numeric problem code (404.1)"})
    message = fields.String(required=True, metadata={"description": "What went wrong, for people"})
    details = fields.Dict(
        required=True,
        metadata={"description": "What was wrong, by name; `problem` is Fieldsync's stable machine name"},
    )
    protocol = fields.String(validate=validate.OneOf([PROTOCOL]), metadata={"description": "Sync routes"})


def _schema_namer() -> Callable[[type[Schema] | Schema], str]:
    taken: dict[str, type[Schema]] = {}

    def name(schema: type[Schema] | Schema) -> str:
        # Two areas may both have a ``VersionOut``: the second is named after its module too.
        cls = resolve_schema_cls(schema)
        for candidate in (cls.__name__, f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"):
            if taken.setdefault(candidate, cls) is cls:
                return candidate
        raise ValueError(f"two schemas are both named {cls.__module__}.{cls.__name__}")

    return name


def _path_parameter(rule: Rule, name: str) -> dict[str, Any]:
    converter = rule._converters.get(name)
    schema: dict[str, Any]
    if isinstance(converter, IntegerConverter):
        schema = {"type": "integer", "minimum": 0, "maximum": converter.max}
    elif isinstance(converter, AnyConverter):
        schema = {"type": "string", "enum": sorted(converter.items)}
    else:
        schema = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
    return {"in": "path", "name": name, "required": True, "schema": schema}


def _content(answer: Answer) -> dict[str, Any] | None:
    if answer is None:
        return None
    if isinstance(answer, ListOf):
        return {"application/json": {"schema": {"type": "array", "items": answer.schema}}}
    if isinstance(answer, str | tuple):
        media_types = (answer,) if isinstance(answer, str) else answer
        return {m: {"schema": {"type": "string", "contentMediaType": m}} for m in media_types}
    if isinstance(answer, Mapping):
        return {
            m: {"schema": {"type": "string", "contentMediaType": m} if schema is None else schema}
            for m, schema in answer.items()
        }
    return {"application/json": {"schema": answer}}


def _error_statuses(rule: Rule, contract: Contract) -> list[int]:
    statuses = set(contract.errors) | {503}
    if not contract.public:
        statuses |= {401, 403}
    if contract.body or contract.raw_body:
        statuses |= {400, 413}
    if contract.query or contract.headers:
        statuses.add(400)
    if rule.arguments:
        statuses.add(404)
    return sorted(statuses)


def _operation(rule: Rule, method: str, view: Any, contract: Contract) -> dict[str, Any]:
    doc = _RST_LITERAL.sub(r"`\1`", (view.__doc__ or "").strip())  # docstrings are rST, the page is Markdown
    summary, _, rest = doc.partition("\n")
    description = "\n\n".join(part for part in (rest.strip(), contract.notes) if part)
    parameters: list[dict[str, Any]] = [_path_parameter(rule, name) for name in _URL_PARAMETER.findall(rule.rule)]
    if contract.query is not None:
        parameters.append({"in": "query", "schema": contract.query})
    for header in contract.headers:
        parameters.append(
            {
                "in": "header",
                "name": header.name,
                "description": header.description,
                "required": header.required,
                "schema": dict(header.schema),
            }
        )
    responses: dict[str, Any] = {}
    for status, answer in contract.ok.items():
        response: dict[str, Any] = {"description": "Success"}
        content = _content(answer)
        if content:
            response["content"] = content
        headers = dict(contract.response_headers)
        if isinstance(answer, ListOf):
            headers.setdefault("X-Total-Count", "How many items the list has")
        if headers:
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
            }
        responses[str(status)] = response
    for status in _error_statuses(rule, contract):
        if str(status) in responses:
            continue  # an answer with a body of its own (``/healthz``'s 503)
        responses[str(status)] = {
            "description": _ERROR_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": ErrorOut}},
        }
    operation: dict[str, Any] = {
        "operationId": rule.endpoint,
        "tags": [rule.endpoint.partition(".")[0]],
        "summary": summary.rstrip("."),
        "parameters": parameters,
        "responses": responses,
    }
    if description:
        operation["description"] = description
    if contract.public:
        operation["security"] = []
    if contract.body is not None:
        operation["requestBody"] = {
            "required": contract.body_required,
            "content": {"application/json": {"schema": contract.body}},
        }
    elif contract.raw_body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media, schema in contract.raw_body.items()},
        }
    return operation


def _methods(rule: Rule) -> list[str]:
    methods = set(rule.methods or ())
    if rule.provide_automatic_options:
        methods.discard("OPTIONS")
    if "GET" in methods:
        methods.discard("HEAD")  # Flask answers HEAD for every GET by itself
    return sorted(methods)


def documented_rules(app: Flask) -> list[Rule]:
    """The URL rules the document describes: every rule with a contract (the JSON API, health, this)."""
    return [rule for rule in app.url_map.iter_rules() if contract_of(app.view_functions.get(rule.endpoint))]


def build_document(app: Flask) -> dict[str, Any]:
    """Generate the OpenAPI 3.1 document of ``app``'s JSON API."""
    spec = APISpec(
        title="Fieldsync API",
        version="1",
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin(schema_name_resolver=_schema_namer())],
        info={"description": DESCRIPTION},
    )
    spec.components.security_scheme("basic", {"type": "http", "scheme": "basic"})
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "A session token or a device token"}
    )
    spec.options["security"] = [{"basic": []}, {"bearer": []}]
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(documented_rules(app), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        contract = contract_of(view)
        assert contract is not None
        path = _URL_PARAMETER.sub(r"{\1}", rule.rule)
        for method in _methods(rule):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, method, view, contract)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document: dict[str, Any] = spec.to_dict()
    document["security"] = spec.options["security"]
    return document


def _document() -> dict[str, Any]:
    cached = current_app.extensions.get("fieldsync.openapi")
    if cached is None:
        cached = current_app.extensions["fieldsync.openapi"] = build_document(current_app._get_current_object())  # type: ignore[attr-defined]
    return cached


class DocumentOut(Schema):
    """An OpenAPI 3.1 document (this one)."""

    class Meta:
        unknown = "include"

    openapi = fields.String(required=True)
    info = fields.Dict(required=True)
    paths = fields.Dict(required=True)
    components = fields.Dict()
    security = fields.List(fields.Dict())


@bp.get(DOCUMENT_PATH)
@documented({200: DocumentOut}, public=True)
def openapi_document() -> dict[str, Any]:
    """This document: the JSON API in OpenAPI 3.1, generated from the handlers' schemas."""
    return _document()


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fieldsync API reference</title>
<link rel="icon" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="reference"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/reference.js"></script>
</body>
</html>
"""

# A file, not an inline script: a Content-Security-Policy without 'unsafe-inline' keeps the page working.
_START = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "%s",
    dom_id: "#reference",
    deepLinking: true,
    tryItOutEnabled: false,
    validatorUrl: null
  });
});
"""


def _swagger_ui_dir() -> Path:
    if not (SWAGGER_UI_DIR / "swagger-ui-bundle.js").is_file():
        raise ApiError(
            503,
            "reference_assets_missing",
            "The API reference page needs the npm package swagger-ui-dist: run `make install` (or `npm ci`)",
            {"document": DOCUMENT_PATH},
        )
    return SWAGGER_UI_DIR


@bp.get("/docs")
@documented({200: "text/html"}, public=True)
def reference_page() -> Response:
    """The API reference page (Swagger UI over this document), served without any CDN."""
    _swagger_ui_dir()
    return Response(_PAGE, mimetype="text/html")


@bp.get("/docs/reference.js")
@documented({200: "text/javascript"}, public=True)
def reference_script() -> Response:
    """The script that starts Swagger UI on ``/docs``."""
    return Response(_START % DOCUMENT_PATH, mimetype="text/javascript")


@bp.get("/docs/assets/<name>")
@documented({200: ("text/css", "text/javascript", "image/png")}, public=True)
def reference_asset(name: str) -> Response:
    """A file of the npm package swagger-ui-dist (only the few the page uses)."""
    if name not in SWAGGER_UI_FILES:
        raise ApiError(404, "not_found", "No such file of the API reference", {"name": name})
    response = send_from_directory(_swagger_ui_dir(), name, max_age=3600)
    return response
