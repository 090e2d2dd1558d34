"""gunicorn's access log without secrets: ``fieldsync serve`` runs gunicorn with this logger class.

gunicorn writes the raw request line (``%(r)s``), the path, the referer and, in custom formats, any
request header or environ value. Device tokens travel in the path (``/v1/key/<token>/...``) and a
person's password in ``Authorization``: every atom is passed through ``redact_tokens`` (the JSON request
log's rule) and credential headers are replaced, so no format an operator picks can print them.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from server.request_log import redact_tokens

_SECRET_ATOMS = frozenset({"{authorization}i", "{cookie}i", "{set-cookie}o", "{http_authorization}e", "{http_cookie}e"})


class RedactingLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger, with device tokens and credentials removed from every access-log atom."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        """The atoms of one access-log line, redacted."""
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if key in _SECRET_ATOMS:
                atoms[key] = "***"
            elif isinstance(value, str) and "/key/" in value:
                atoms[key] = redact_tokens(value)
        return atoms
