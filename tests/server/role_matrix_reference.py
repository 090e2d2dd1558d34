"""Role matrix rows for the API reference: the document and its page are public (they hold no data)."""

from __future__ import annotations

from tests.server.role_matrix import PERSONAS, Case

ANYONE = dict.fromkeys(PERSONAS, 200)

CASES = [
    Case("GET", "/v1/openapi.json", "/v1/openapi.json", ANYONE),
    Case("GET", "/docs", "/docs", ANYONE),
    Case("GET", "/docs/reference.js", "/docs/reference.js", ANYONE),
    Case("GET", "/docs/assets/swagger-ui.css", "/docs/assets/<name>", ANYONE),
]
