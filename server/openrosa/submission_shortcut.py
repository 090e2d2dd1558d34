"""The OpenRosa submission POST of a device key, stored and answered before Flask runs.

Collect's usual upload (a device-token URL, one ``xml_submission_file`` part, no photos) is the
request the server gets most. Profiled in-process (PostgreSQL, the bench submission of ~2 KB): of
about 2.2 ms of CPU per POST, Flask's request context, routing (twice: the body spool asks whether
the view streams), the hooks and the response object, werkzeug's form parser (a ``FileStorage`` and
its spooled file for 2 KB of XML) and the request's session bookkeeping took close to half, around
two queries and the XML parse that do the work. This middleware sits between the body spool (so
the body has arrived whole before anything opens a transaction) and Flask, and runs exactly what
the view runs: ``device_and_form_target`` (key and form target in one query) and
``ingest_submission``, with the principal ``adopt_device`` would give.

It answers only when everything the full app checks holds and its answer is a 201: a POST to the
key URL spelt as Collect spells it, a length-delimited body that arrived whole and fits the
one-query size, no credentials header, a query that is plain text, a multipart body whose only
part is the XML file; a live device key of this project with ``submission.create`` (a stale
``last_used_at`` is written once the submission is stored, in its own transaction, as the full
app does); an outcome the view answers with 201 (created, updated, duplicate, awaiting files).
Anything else is handed to the full app unchanged, which answers as always: before any write (the
transaction rolled back) for a key or a body it must judge, after the use case for a refusal (409,
403, 404, 400). The use case is idempotent (an identical POST is a duplicate, a refused payload is
kept once), so the full app deciding again gives the same answer and stores nothing twice. The
answer carries the full app's headers and body, is counted in the request and submission metrics
and logged like any other request.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header, parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, File, MultipartDecoder, Preamble

from server import metrics, request_log
from server.auth import use_is_recent
from server.body_spool import BODY_CUT, DECLARED
from server.database_ids import parse_database_id
from server.errors import openrosa_message_xml
from server.openrosa.auth import live_device
from server.openrosa.formlist import plain_query
from server.openrosa.responses import XML_CONTENT_TYPE, date_headers, openrosa_headers
from server.passwords import token_hash
from server.services.accounts import note_token_use
from server.services.submissions import device_and_form_target, ingest_submission
from server.store import get_store
from server.web_security import security_headers
from sync.outcomes import Quarantined, Rejected

log = logging.getLogger("fieldsync.openrosa")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
SUBMISSION_KEY_RULE = "/v1/key/<token>/projects/<int:project_id>/submission"
# The device-token submission URL as Collect asks for it; any other spelling is left to the full app.
_KEY_SUBMISSION = re.compile(r"/v1/key/([A-Za-z0-9_\-]+)/projects/([0-9]{1,19})/submission")
XML_PART = "xml_submission_file"


class SubmissionShortcut:
    """WSGI middleware: a device's plain submission POST stored and answered without Flask (module docstring)."""

    def __init__(self, app: Flask, inner: WsgiApp) -> None:
        self.app = app
        self.inner = inner
        self.enabled = True
        self.log_requests = request_log.enabled(app)
        self._french: dict[str, bool] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Store and answer a plain submission, or hand the request to the full app."""
        started = time.perf_counter()
        answer = self._answer(environ) if self.enabled else None
        if answer is None:
            stream = environ.get("wsgi.input")
            if stream is not None and hasattr(stream, "seek"):
                stream.seek(0)  # the full app reads the body from its start
            return self.inner(environ, start_response)
        body, actor, device_id = answer
        config = self.app.config
        headers = [
            ("Content-Type", XML_CONTENT_TYPE),
            ("Content-Length", str(len(body))),
            *openrosa_headers(config),
            *date_headers(environ),
            *security_headers(environ.get("wsgi.url_scheme") in ("https", "wss")),
        ]
        start_response("201 CREATED", headers)
        seconds = time.perf_counter() - started
        metrics.observe_request("POST", SUBMISSION_KEY_RULE, 201, seconds)
        if self.log_requests:
            length = environ.get("CONTENT_LENGTH", "")
            request_log.log_request(
                "POST",
                environ["PATH_INFO"],
                201,
                round(seconds * 1000, 2),
                actor,
                device_id,
                int(length) if length.isdigit() else None,
            )
        return [body]

    def _answer(self, environ: dict[str, Any]) -> tuple[bytes, str, str | None] | None:
        from server.openrosa.submission import ONE_QUERY_BYTES, success_message

        length = environ.get("CONTENT_LENGTH", "")
        if (
            environ.get("REQUEST_METHOD") != "POST"
            or not length.isdigit()
            or not 0 < int(length) <= ONE_QUERY_BYTES
            or environ.get(DECLARED) != int(length)  # spooled whole by server.body_spool, not chunked
            or environ.get(BODY_CUT) is not None
            or "HTTP_AUTHORIZATION" in environ
        ):
            return None
        match = _KEY_SUBMISSION.fullmatch(environ.get("PATH_INFO", ""))
        project_id = parse_database_id(match.group(2)) if match is not None else None
        query = plain_query(environ.get("QUERY_STRING", ""))
        if match is None or project_id is None or query is None:
            return None
        limit = int(self.app.config["MAX_SUBMISSION_BYTES"])
        xml = _only_xml_part(environ, limit)
        if xml is None:
            return None
        device_id = query[1]
        sessions = get_store(self.app).sessions
        session = sessions()
        try:
            with self.app.app_context():
                found = device_and_form_target(session, token_hash(match.group(1)), project_id, xml)
                if found is None:
                    return None  # the full app authenticates
                principal = live_device(found[0], project_id)
                if principal is None:
                    return None
                result = ingest_submission(
                    session,
                    project_id=project_id,
                    xml=xml,
                    files={},
                    principal=principal,
                    device_id=device_id,
                    source="openrosa",
                    user_agent=environ.get("HTTP_USER_AGENT"),
                    routed=found[1],
                )
        except SQLAlchemyError:
            # Rolled back: the full app decides again, on a fresh connection if this one was lost (idempotent),
            # and gives a store that still fails its usual answer (503).
            return None
        except Exception:
            # A bug here must not cost the phone its upload: the full app answers (idempotently).
            log.warning("the submission shortcut failed; the full app answers", exc_info=True)
            return None
        finally:
            session.close()
        if isinstance(result.outcome, Rejected | Quarantined):
            return None  # the full app decides again (idempotent) and answers the refusal
        if not use_is_recent(found[0].last_used_at):
            # As the full app after a success: the key's use in its own short transaction, once stored.
            use = sessions()
            try:
                note_token_use(use, found[0].id)
            except Exception:  # the submission is stored: its answer stands, as in the full app
                log.warning("noting the device key's use failed", exc_info=True)
            finally:
                use.close()
        metrics.count_submission("openrosa", result.outcome.status)
        message = success_message(result, self._is_french(environ.get("HTTP_ACCEPT_LANGUAGE", "")))
        return openrosa_message_xml(message, "").encode("utf-8"), principal.actor, device_id

    def _is_french(self, accept_language: str) -> bool:
        """``request.accept_languages.best_match(["en", "fr"]) == "fr"``, remembered per header value."""
        found = self._french.get(accept_language)
        if found is None:
            accepted = parse_accept_header(accept_language or None, LanguageAccept)
            found = accepted.best_match(["en", "fr"]) == "fr"
            if len(self._french) >= 256:
                self._french.clear()
            self._french[accept_language] = found
        return found


def _only_xml_part(environ: dict[str, Any], limit: int) -> bytes | None:
    """The bytes of the body's ``xml_submission_file`` file part when it is the only part; else ``None``.

    ``None`` too for anything the full app must judge: not multipart, no boundary, a part of another
    name, a field, a body that does not end with the closing boundary, XML empty or over ``limit``.
    """
    mimetype, options = parse_options_header(environ.get("CONTENT_TYPE", ""))
    boundary = options.get("boundary")
    if mimetype.lower() != "multipart/form-data" or not boundary:
        return None
    stream = environ.get("wsgi.input")
    if stream is None:
        return None
    try:
        decoder = MultipartDecoder(boundary.encode("ascii"))  # as werkzeug's form parser
        decoder.receive_data(stream.read())
        decoder.receive_data(None)
        chunks: list[bytes] = []
        seen_file = False
        while True:
            event = decoder.next_event()
            if isinstance(event, Preamble):
                continue
            if isinstance(event, File) and not seen_file and event.name == XML_PART:
                seen_file = True
            elif isinstance(event, Data) and seen_file:
                chunks.append(event.data)
            elif isinstance(event, Epilogue) and seen_file:
                break
            else:  # another part, a field, a second file, NeedData (the body ended early)
                return None
    except (ValueError, UnicodeError):
        return None
    xml = b"".join(chunks)
    if not xml.strip() or len(xml) > limit:
        return None
    return xml


def init_shortcut(app: Flask) -> None:
    """Put the submission shortcut in front of ``app``'s Flask handling (call before ``body_spool.init_app``)."""
    shortcut = SubmissionShortcut(app, app.wsgi_app)
    app.extensions["fieldsync.submission_shortcut"] = shortcut
    app.wsgi_app = shortcut  # type: ignore[method-assign]


def shortcut_of(app: Flask) -> SubmissionShortcut:
    """The submission shortcut installed in ``app``."""
    shortcut: SubmissionShortcut = app.extensions["fieldsync.submission_shortcut"]
    return shortcut


__all__ = ["SUBMISSION_KEY_RULE", "SubmissionShortcut", "init_shortcut", "shortcut_of"]
