"""One error vocabulary: stable codes, one JSON shape, and OpenRosa XML for OpenRosa routes.

Every error a client can cause is an ``ApiError`` (or is turned into one here), rendered as ODK
Central renders its problems: ``{"code": 404.1, "message": ..., "details": {..., "problem": "not_found"}}``.
Nothing a client sends may produce a 500.
"""

from __future__ import annotations

import logging
from typing import Any
from xml.sax.saxutils import escape

from flask import Flask, Response, g, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from server.api.conventions import camel

log = logging.getLogger("fieldsync.errors")

# Fieldsync's machine names → Central's numeric problem codes (central-backend lib/util/problem.js).
# A name not listed keeps its HTTP status as its code (a whole number, still ``floor(code) == status``).
CENTRAL_CODES: dict[str, float] = {
    "malformed_json": 400.1,
    "malformed_xml": 400.1,
    "incomplete_body": 400.1,
    "missing_parameter": 400.2,
    "unexpected_attribute": 400.4,
    "invalid_header": 400.6,
    "missing_file": 400.7,
    "no_xml_submission_file": 400.7,
    "invalid_input": 400.8,
    "invalid_state": 400.8,
    "invalid_form_id": 400.8,
    "missing_form_id": 400.8,
    "weak_password": 400.21,
    "xlsform_invalid": 400.15,
    "form_warnings": 400.16,
    "no_deprecated_id": 400.19,
    "unauthenticated": 401.2,
    "forbidden": 403.1,
    "token_revoked": 403.1,
    "not_found": 404.1,
    "no_draft": 404.1,
    "unknown_form": 404.1,
    "unknown_deprecated_id": 404.5,
    "form_version_not_found": 404.6,
    "id_conflict": 409.1,
    "form_closed": 409.2,
    "project_name_taken": 409.3,
    "username_taken": 409.3,
    "email_taken": 409.3,
    "token_taken": 409.3,
    "preset_exists": 409.3,
    "version_taken": 409.6,
    "no_published_version": 409.7,
    "instance_id_taken": 409.8,
    "stale_base": 409.9,
    "too_large": 413.1,
    "internal_error": 500.1,
    "conversion_timeout": 502.1,
}


def problem_code(status: int, name: str) -> float | int:
    """Central's numeric code for an error of ``status`` named ``name`` by Fieldsync."""
    code = CENTRAL_CODES.get(name)
    if code is None or int(code) != status:
        return status
    return code


class ApiError(Exception):
    """An error with an HTTP status, a stable machine code and a human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        message_fr: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}
        self.message_fr = message_fr

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON body for this error: Central's numeric code, Fieldsync's name in ``details.problem``."""
        return {
            "code": problem_code(self.status, self.code),
            "message": self.message,
            # Keys in camelCase as every field of the JSON API (values, such as a field's name, as they are).
            "details": {**{camel(key): value for key, value in self.details.items()}, "problem": self.code},
        }


def bad_request(code: str, message: str, **details: Any) -> ApiError:
    """Build a 400 error."""
    return ApiError(400, code, message, details)


def not_found(what: str, **details: Any) -> ApiError:
    """Build a 404 error for a missing ``what``."""
    return ApiError(404, "not_found", f"{what} not found", details)


def conflict(code: str, message: str, **details: Any) -> ApiError:
    """Build a 409 error."""
    return ApiError(409, code, message, details)


def unauthenticated(message: str = "Authentication required", challenge: str | None = None) -> ApiError:
    """Build a 401 error, with a ``WWW-Authenticate`` challenge when given."""
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    return ApiError(401, "unauthenticated", message, headers=headers)


def forbidden(message: str = "You do not have the role this requires") -> ApiError:
    """Build a 403 error."""
    return ApiError(403, "forbidden", message)


def too_large(limit: int, what: str = "request body") -> ApiError:
    """Build a 413 error that states the limit."""
    return ApiError(
        413,
        "too_large",
        f"The {what} is larger than the limit of {limit} bytes",
        {"limit_bytes": limit},
        message_fr=f"Le contenu dépasse la limite de {limit} octets",
    )


def openrosa_message_xml(message: str, nature: str = "error") -> str:
    """Render an OpenRosaResponse envelope carrying one message."""
    return (
        '<OpenRosaResponse xmlns="http://openrosa.org/http/response" items="0">'
        f'<message nature="{escape(nature)}">{escape(message)}</message>'
        "</OpenRosaResponse>"
    )


OPENROSA_BLUEPRINTS = {"openrosa"}


def _is_openrosa_request() -> bool:
    return request.blueprint in OPENROSA_BLUEPRINTS or bool(g.get("openrosa"))


def _wants_french() -> bool:
    best = request.accept_languages.best_match(["en", "fr"])
    return best == "fr"


def render_error(error: ApiError) -> Response:
    """Turn an ``ApiError`` into JSON, or into OpenRosa XML on OpenRosa routes."""
    if _is_openrosa_request():
        text = error.message_fr if (error.message_fr and _wants_french()) else error.message
        response = Response(openrosa_message_xml(text), status=error.status, content_type="text/xml; charset=utf-8")
        response.headers["X-OpenRosa-Version"] = "1.0"
    else:
        response = jsonify(error.to_dict())
        response.status_code = error.status
    for key, value in error.headers.items():
        response.headers[key] = value
    return response


def init_app(app: Flask) -> None:
    """Register the error handlers on ``app``."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return render_error(error)

    @app.errorhandler(ValidationError)
    def _validation_error(error: ValidationError) -> Response:
        messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        fields = ", ".join(sorted(str(k) for k in messages))
        return render_error(ApiError(400, "invalid_input", f"Invalid input in: {fields}", {"fields": messages}))

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(error: RequestEntityTooLarge) -> Response:
        limit = app.config.get("MAX_CONTENT_LENGTH") or 0
        return render_error(too_large(int(limit)))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = (error.name or "error").lower().replace(" ", "_")
        return render_error(ApiError(status, code, error.description or error.name or "error"))

    @app.errorhandler(DBAPIError)
    def _store_error(error: DBAPIError) -> Response:
        # A dropped connection, a database starting up or refusing connections, a deadlock: the
        # database, not the request, failed. 503 tells clients (Collect keeps the form) to try again.
        if isinstance(error, OperationalError) or error.connection_invalidated:
            log.warning("store unavailable on %s %s", request.method, request.path, exc_info=error)
            return render_error(
                ApiError(
                    503,
                    "store_unavailable",
                    "The server cannot use its database right now: nothing was stored, try again in a moment",
                    headers={"Retry-After": "5"},
                    message_fr="Le serveur ne peut pas utiliser sa base de données pour le moment : rien n'a été "
                    "enregistré, réessayez dans un instant.",
                )
            )
        return _unexpected(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # A bug, not the client's fault: log it with the traceback, answer with a stable shape.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_error(ApiError(500, "internal_error", "Internal server error"))
