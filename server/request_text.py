"""Text a client sends in a URL or credentials must be storable text: no NUL character.

PostgreSQL cannot hold U+0000 in a text value (psycopg refuses it before sending: ``DataError``), so a
``%00`` in a path segment, a query value or a Basic username answered 500 there while SQLite worked.
Every request is checked once, before its handler: a NUL is a 400 naming where it was. (JSON bodies are
checked by ``server.json_input``; XML parsers refuse NUL themselves.)
"""

from __future__ import annotations

from flask import Flask, request

from server.errors import bad_request


def refuse_nul_characters() -> None:
    """Raise a 400 when the path, the query string or the credentials hold a NUL character."""
    places = {"path": request.path}
    for key, value in request.args.items(multi=True):
        where = f"query parameter {key!r}"
        places[where] = places.get(where, "") + key + value  # every value of a repeated parameter
    auth = request.authorization
    if auth is not None:
        places["credentials"] = f"{auth.username or ''}{auth.password or ''}{auth.token or ''}"
    for where, text in places.items():
        if "\x00" in text:
            raise bad_request("nul_character", f"There is a NUL character (%00) in the {where}: it is not text")


def init_app(app: Flask) -> None:
    """Check every request of ``app`` for NUL characters before its handler runs."""
    app.before_request(refuse_nul_characters)
