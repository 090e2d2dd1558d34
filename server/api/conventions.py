"""ODK Central's conventions for the whole JSON API, in one place.

Every ``/v1`` JSON endpoint (Central's resources and Fieldsync's own) follows them:

- fields are camelCase on the wire (:class:`CamelSchema`: Python attributes stay snake_case);
- a list is a bare JSON array with ``X-Total-Count`` (:func:`json_list`); ``X-Extended-Metadata: true``
  asks for the extended form of a resource (:func:`wants_extended`);
- an error is ``{"code": 404.1, "message", "details"}`` with Central's numeric problem code
  (``server.errors.problem_code``); Fieldsync's finer machine name stays in ``details.problem``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from flask import Response, jsonify, request, url_for
from marshmallow import RAISE, Schema, fields

_WORD_START = re.compile(r"_([a-z0-9])")


def camel(name: str) -> str:
    """``expires_at`` → ``expiresAt`` (a leading underscore or ``__system`` is kept as it is)."""
    if name.startswith("_"):
        return name
    return _WORD_START.sub(lambda match: match.group(1).upper(), name)


class CamelSchema(Schema):
    """A schema whose fields cross the wire in camelCase (an explicit ``data_key`` is kept)."""

    def on_bind_field(self, field_name: str, field_obj: fields.Field) -> None:
        """Name the field on the wire in camelCase unless it names itself."""
        if field_obj.data_key is None:
            field_obj.data_key = camel(field_name)


class StrictCamelSchema(CamelSchema):
    """A camelCase schema that refuses unknown fields (request bodies and query strings)."""

    class Meta:
        unknown = RAISE


def json_list(items: Iterable[Any], schema: Schema, total: int | None = None) -> Response:
    """Answer a bare JSON array dumped with ``schema`` (``many``) and its ``X-Total-Count``."""
    rows = list(items)
    response = jsonify(schema.dump(rows, many=True))
    response.headers["X-Total-Count"] = str(len(rows) if total is None else total)
    return response


def link_next(response: Response, endpoint: str, cursor: dict[str, str], **view_args: Any) -> None:
    """Point ``Link: <...>; rel="next"`` at this request's URL with the next page's cursor parameter(s)."""
    following = url_for(endpoint, _external=True, **view_args, **{**request.args.to_dict(), **cursor})
    response.headers["Link"] = f'<{following}>; rel="next"'


def wants_extended() -> bool:
    """Tell whether the caller asked for extended metadata (``X-Extended-Metadata: true``)."""
    return request.headers.get("X-Extended-Metadata", "").strip().lower() == "true"


def query_flag(name: str) -> bool:
    """Read a Central-style boolean query parameter (``?publish=true``)."""
    return request.args.get(name, "").strip().lower() == "true"
