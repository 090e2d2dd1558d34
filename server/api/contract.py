"""What each JSON endpoint takes and answers, declared on its handler: the source of ``/v1/openapi.json``.

``@documented(...)`` records a :class:`Contract` on the view function: the marshmallow schemas of its
body, query string and answers, the request headers it reads, and the error statuses it can give
beyond the ones every endpoint shares. ``server/api/openapi.py`` builds the OpenAPI document from the
URL map and these contracts, and ``server/api/wire.py`` refuses to load a body or query schema the
handler's contract does not name, so the document cannot drift from what the handler parses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from marshmallow import Schema

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class ListOf:
    """An answer that is a bare JSON array of ``schema`` (Central's lists, with ``X-Total-Count``)."""

    schema: type[Schema]


# An answer's content: a schema class (JSON), ``ListOf(schema)`` (a JSON array), a media type or a tuple
# of them (a file), None (no body),
# or media type -> schema class, JSON Schema or None (a file) when one endpoint answers several.
Answer = type[Schema] | ListOf | str | tuple[str, ...] | Mapping[str, type[Schema] | Mapping[str, Any] | None] | None
# A request body that is not a JSON object loaded by ``wire.load_json``: media type -> schema class or
# JSON Schema (a file upload, a raw tus chunk, the push envelope the sync core parses item by item).
RawBody = Mapping[str, type[Schema] | Mapping[str, Any]]

_ATTRIBUTE = "fieldsync_contract"


@dataclass(frozen=True)
class Header:
    """A request header an endpoint reads."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Contract:
    """One endpoint's side of the wire."""

    ok: Mapping[int, Answer]
    body: type[Schema] | None = None
    body_required: bool = True
    query: type[Schema] | None = None
    raw_body: RawBody | None = None
    errors: frozenset[int] = frozenset()
    public: bool = False
    headers: tuple[Header, ...] = ()
    response_headers: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""


def documented(
    ok: Mapping[int, Answer],
    *,
    body: type[Schema] | None = None,
    body_required: bool = True,
    query: type[Schema] | None = None,
    raw_body: RawBody | None = None,
    errors: tuple[int, ...] = (),
    public: bool = False,
    headers: tuple[Header, ...] = (),
    response_headers: Mapping[str, str] | None = None,
    notes: str = "",
) -> Callable[[View], View]:
    """Record the endpoint's contract on its view (put it below the route decorator).

    ``errors`` lists the statuses beyond the shared ones (401/403 unless ``public``, 400 with a body or
    a query, 404 with path parameters, 413 with a body, 503 when the store is down).
    """
    contract = Contract(
        ok=dict(ok),
        body=body,
        body_required=body_required,
        query=query,
        raw_body=raw_body,
        errors=frozenset(errors),
        public=public,
        headers=headers,
        response_headers=dict(response_headers or {}),
        notes=notes,
    )

    def record(view: View) -> View:
        setattr(view, _ATTRIBUTE, contract)
        return view

    return record


def contract_of(view: Callable[..., Any] | None) -> Contract | None:
    """The contract recorded on ``view``, if any."""
    found = getattr(view, _ATTRIBUTE, None)
    return found if isinstance(found, Contract) else None
