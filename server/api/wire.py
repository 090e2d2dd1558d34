"""Reading request bodies and query strings through marshmallow, with 400s that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app, request
from marshmallow import Schema

from server.api.contract import contract_of
from server.errors import ApiError
from server.json_input import ClientJsonError, JsonSyntaxError, parse_client_json


def _check_contract(kind: str, schema: Schema) -> None:
    # The OpenAPI document shows the schemas a handler's contract names: loading another one is a
    # programming error (the document would lie), caught by any test that reaches the handler.
    contract = contract_of(current_app.view_functions.get(request.endpoint or ""))
    if contract is not None and getattr(contract, kind) is not type(schema):
        raise RuntimeError(f"{request.endpoint} loads {type(schema).__name__} as its {kind} but documents another")


def require_json_content_type() -> None:
    """Refuse (``415``) a body that does not say ``Content-Type: application/json``.

    A page of another site can make a browser send ``text/plain`` (an HTML form) with the Basic
    credentials it holds, but never ``application/json`` without asking this server first (CORS).
    """
    if request.mimetype != "application/json":
        sent = request.mimetype or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"The body must be JSON sent with Content-Type: application/json (got {sent})",
            {"content_type": sent, "expected": "application/json"},
        )


def load_json(schema: Schema) -> dict[str, Any]:
    """Parse the JSON body and validate it with ``schema`` (unknown fields are refused; ``415`` unless JSON)."""
    _check_contract("body", schema)
    require_json_content_type()
    raw = request.get_data(cache=True)
    try:
        data = parse_client_json(raw or b"null")
    except JsonSyntaxError as exc:
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}") from None
    except ClientJsonError as exc:
        raise ApiError(400, "malformed_json", f"The body is not acceptable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "The body must be a JSON object")
    loaded: dict[str, Any] = schema.load(data)
    return loaded


def load_query(schema: Schema, args: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Validate query-string parameters with ``schema``."""
    _check_contract("query", schema)
    source = request.args if args is None else args
    loaded: dict[str, Any] = schema.load(dict(source.items()))
    return loaded
