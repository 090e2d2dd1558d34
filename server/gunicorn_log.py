"""gunicorn's access log without secrets: ``fieldsync serve`` runs gunicorn with this logger class.

gunicorn writes the raw request line (``%(r)s``), the path, the referer and, in custom formats, any
request header or environ value. Device tokens travel in the path (``/v1/key/<token>/...``) and a
person's password in ``Authorization``: every atom is passed through ``redact_tokens`` (the JSON request
log's rule) and credential headers are replaced, so no format an operator picks can print them. The
error log (``Invalid request from ...``, a bad request line quoted in an exception) gets the same rule.
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.glogging import Logger

from server.request_log import redact_tokens

_SECRET_ATOMS = frozenset({"{authorization}i", "{cookie}i", "{set-cookie}o", "{http_authorization}e", "{http_cookie}e"})


class _RedactTokens(logging.Filter):
    """Rewrite a record's message with the device tokens it quotes replaced by ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/key/" in message:
            record.msg, record.args = redact_tokens(message), ()
        if record.exc_info and record.exc_info[1] is not None and "/key/" in str(record.exc_info[1]):
            record.exc_text = redact_tokens(logging.Formatter().formatException(record.exc_info))
        return True


class RedactingLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger, with device tokens and credentials removed from every access-log atom."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's set-up, plus the token filter on the error log."""
        super().setup(cfg)
        if not any(isinstance(f, _RedactTokens) for f in self.error_log.filters):
            self.error_log.addFilter(_RedactTokens())

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        """The atoms of one access-log line, redacted."""
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if key in _SECRET_ATOMS:
                atoms[key] = "***"
            elif isinstance(value, str) and "/key/" in value:
                atoms[key] = redact_tokens(value)
        return atoms
