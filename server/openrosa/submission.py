"""OpenRosa submission routes: ``HEAD`` (204) and multipart ``POST`` (201) under both server URLs.

Follows OPENROSA.md and reference/peers.md §4: Collect sends ``HEAD`` first and expects ``204`` with
``X-OpenRosa-Accept-Content-Length``; it splits big uploads into several POSTs repeating the identical
XML (``*isIncomplete*=yes`` on all but the last) and only counts ``201``/``202`` as success, so every
accepted or already-stored submission answers ``201``. The decision itself is
``server.services.submissions.ingest_submission``; this module maps its outcome to HTTP.

A POST cut by the network (see server/body_spool.py) keeps what arrived whole: the XML, stored as a
submission awaiting its files exactly as after the first of Collect's split POSTs, and every complete
file part; the answer is 400, so Collect sends the submission again and the retry adds what is missing.

A small POST with a key in its path is read before the key is checked, so that one query checks the
key and routes the submission (form, version, edit-chain locks); the answers stay those of the usual
order (an unknown key is 401 whatever the body). Everything else authenticates first.
"""

from __future__ import annotations

from flask import Response, current_app, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from server import metrics
from server.auth import Principal
from server.blobstore import BlobStore
from server.body_spool import body_cut, close_after_response, keeps_partial_body
from server.db.transaction import read_without_transaction
from server.errors import ApiError, bad_request, too_large
from server.openrosa.auth import COLLECT_PERMISSION, adopt_device, require_openrosa
from server.openrosa.blueprint import bp
from server.openrosa.cut_parts import CutBody, boundary_of, complete_parts
from server.openrosa.responses import message_response
from server.passwords import token_hash
from server.services.forms import form_not_assigned
from server.services.submission_files import discard_staged, stage_upload
from server.services.submissions import (
    FileUpload,
    IngestResult,
    RoutedSubmission,
    blob_store,
    device_and_form_target,
    ingest_submission,
)
from server.store import db_session
from sync.outcomes import FORM_CLOSED, FORM_NOT_ASSIGNED, ID_CONFLICT, SUBMISSION_DELETED, Quarantined, Rejected

XML_PART = "xml_submission_file"
INCOMPLETE_PART = "*isIncomplete*"
# Room for the multipart framing around files whose sizes add up to the advertised limit.
MULTIPART_ALLOWANCE = 256 * 1024
# Bodies up to this size (a submission without big photos) are read before their key is checked, so
# that key and form are read in one query; anyone without a key can make the server read no more.
ONE_QUERY_BYTES = 256 * 1024

__all__ = ["ONE_QUERY_BYTES", "bp", "submission", "success_message"]


@bp.route("/v1/projects/<int:project_id>/submission", methods=["HEAD", "POST"])
@bp.route("/v1/key/<token>/projects/<int:project_id>/submission", methods=["HEAD", "POST"])
@keeps_partial_body
def submission(project_id: int, token: str | None = None) -> Response:
    """``HEAD``: 204 (Collect's pre-flight); ``POST``: store a submission and/or its files."""
    # A small POST with a key in its path (Collect's usual upload) authenticates in the query that
    # routes it (see _device_and_target); any other request authenticates first.
    one_query = (
        token is not None
        and request.method == "POST"
        and request.content_length is not None
        and request.content_length <= ONE_QUERY_BYTES
    )
    if request.method == "HEAD" and token is not None:
        # Collect's pre-flight before each batch of uploads: a key's look-up only, so no transaction (and no
        # ROLLBACK, which would deallocate the statements prepared on the connection the next upload gets).
        read_without_transaction(db_session())
    principal = None if one_query else require_openrosa(COLLECT_PERMISSION, project_id, token)
    if request.method == "HEAD":
        return Response(status=204)
    limit = int(current_app.config["MAX_SUBMISSION_BYTES"])
    request.max_content_length = limit + MULTIPART_ALLOWANCE
    if request.content_length is not None and request.content_length > limit + MULTIPART_ALLOWANCE:
        raise too_large(limit)
    cut = body_cut()
    if cut is not None and principal is None:
        principal = require_openrosa(COLLECT_PERMISSION, project_id, token)
    staged: list[FileUpload] = []
    try:
        try:
            xml, files = _read_cut_parts(limit, staged) if cut is not None else _read_parts(limit, staged)
        except ApiError:
            if principal is None:
                require_openrosa(COLLECT_PERMISSION, project_id, token)  # an unknown or revoked key is told first
            raise
        routed = None
        if principal is None:
            assert token is not None
            principal, routed = _device_and_target(project_id, token, xml)
        result = ingest_submission(
            db_session(),
            project_id=project_id,
            xml=xml,
            files={f.name: f for f in files},
            principal=principal,
            device_id=request.args.get("deviceID"),
            source="openrosa",
            user_agent=request.headers.get("User-Agent"),
            routed=routed,
        )
    finally:
        discard_staged(staged)
    if files:
        # A fresh connection for the next POST: links that cut a connection after so many bytes (mobile
        # carriers, NAT) then give each of Collect's one-photo POSTs the whole budget again, for the
        # price of one handshake per photo.
        close_after_response()
    answer = _answer(result)
    if cut is not None:
        # What arrived whole is stored, but the POST is not done: anything but 201 makes Collect send
        # it again (identical XML: the files still missing are added then).
        raise ApiError(
            400,
            "incomplete_body",
            f"The connection was cut; the submission and {len(files)} complete file(s) were kept: send it again",
            {"kept_files": [f.name for f in files]},
            message_fr=f"La connexion a été coupée ; le formulaire et {len(files)} fichier(s) complet(s) sont "
            "conservés : renvoyez-le",
        )
    return answer


def _device_and_target(project_id: int, token: str, xml: bytes) -> tuple[Principal, RoutedSubmission | None]:
    """Authenticate a device key and read the submission's form target (with its chain locks): ONE query.

    Anything but a live device key of this project with the right to submit (a person's key, an
    unknown, revoked or expired one) or XML that names no routing goes the usual way, which gives
    the same answers as for any other request.
    """
    found = device_and_form_target(db_session(), token_hash(token), project_id, xml)
    if found is not None:
        row, routed = found
        principal = adopt_device(row, project_id)
        if principal is not None:
            return principal, routed
    return require_openrosa(COLLECT_PERMISSION, project_id, token), None


def _read_parts(limit: int, staged: list[FileUpload]) -> tuple[bytes, list[FileUpload]]:
    try:
        parts = request.files
        fields = request.form
        xml_file = parts.get(XML_PART)
        xml = xml_file.read(limit + 1) if xml_file is not None else fields.get(XML_PART, "").encode("utf-8")
        if len(xml) > limit:
            raise too_large(limit, "submission XML")
        if not xml.strip():
            raise ApiError(
                400,
                "no_xml_submission_file",
                f"The request has no {XML_PART} part: send the submission as multipart/form-data",
                message_fr=f"La requête n'a pas de partie {XML_PART} : envoyez le formulaire en multipart/form-data",
            )
        blobs = blob_store()
        for key, storage in parts.items(multi=True):
            if key in (XML_PART, INCOMPLETE_PART):
                continue
            staged.append(_stage(blobs, key, storage, limit))
    except RequestEntityTooLarge:
        raise too_large(limit) from None
    return xml, list(staged)


def _read_cut_parts(limit: int, staged: list[FileUpload]) -> tuple[bytes, list[FileUpload]]:
    """The XML and the files of a cut POST that arrived whole (the XML must have: else 400, nothing kept)."""
    boundary = boundary_of(request.mimetype_params) if request.mimetype == "multipart/form-data" else None
    body = complete_parts(request.stream, boundary, limit) if boundary else CutBody({}, [])
    try:
        xml_file = next((f for f in body.files if f.name == XML_PART), None)
        xml = xml_file.read(limit + 1) if xml_file is not None else body.fields.get(XML_PART, b"")
        if not xml.strip() or len(xml) > limit:
            raise ApiError(400, "incomplete_body", "The connection was cut before the submission XML arrived")
        blobs = blob_store()
        for storage in body.files:
            if storage.name not in (XML_PART, INCOMPLETE_PART):
                staged.append(_stage(blobs, storage.name or "", storage, limit))
    finally:
        body.close()
    return xml, list(staged)


def _stage(blobs: BlobStore, key: str, storage: FileStorage, limit: int) -> FileUpload:
    # Collect names each file part after the file (Central keys attachments by part name too).
    name = key or storage.filename or ""
    if not name or "/" in name or "\\" in name or len(name) > 255:
        raise bad_request("bad_file_name", f"The file part name {name!r} is not a plain file name")
    return stage_upload(blobs, name, storage.stream, storage.mimetype, limit)


def _answer(result: IngestResult) -> Response:
    outcome = result.outcome
    metrics.count_submission("openrosa", outcome.status)
    form, version = result.form_id or "", result.form_version or ""
    if isinstance(outcome, Rejected):
        if outcome.reason == ID_CONFLICT:
            raise ApiError(
                409,
                "id_conflict",
                f"A submission already exists with this ID ({result.instance_id}), but with different XML. "
                "The new content was kept for review and not applied.",
                {"instance_id": result.instance_id},
                message_fr=f"Un formulaire existe déjà avec cet identifiant ({result.instance_id}) mais un contenu "
                "différent. Le nouveau contenu est conservé pour vérification, sans être appliqué.",
            )
        if outcome.reason == SUBMISSION_DELETED:
            # ODK Central's 409.18: Collect shows the message, and the device stops resending.
            raise ApiError(
                409,
                "submission_deleted",
                f"This submission has been deleted ({result.instance_id}). You may not resubmit it.",
                {"instance_id": result.instance_id},
                message_fr=f"Ce formulaire a été supprimé ({result.instance_id}). Vous ne pouvez pas le renvoyer.",
            )
        if outcome.reason == FORM_NOT_ASSIGNED:
            raise form_not_assigned(form)
        if outcome.reason == FORM_CLOSED:
            raise ApiError(
                403,
                "form_closed",
                f"The form {form!r} is closed and no longer accepts submissions",
                {"form_id": form},
                message_fr=f"Le formulaire « {form} » est fermé et n'accepte plus d'envois",
            )
        raise ApiError(
            400,
            outcome.reason,
            f"The submission cannot be read: {outcome.detail}",
            {"detail": outcome.detail},
            message_fr=f"Le formulaire envoyé est illisible : {outcome.detail}",
        )
    if isinstance(outcome, Quarantined):
        raise ApiError(
            404,
            "unknown_form",
            f"There is no form {form!r} with version {version!r} in this project",
            {"form_id": form, "version": version},
            message_fr=f"Ce projet n'a pas de formulaire « {form} » en version « {version} »",
        )
    return message_response(success_message(result, request.accept_languages.best_match(["en", "fr"]) == "fr"), 201)


def success_message(result: IngestResult, french: bool) -> str:
    """The message of a 201: the submission stored (or already stored), maybe with files still to send."""
    if result.missing_attachments:
        count = len(result.missing_attachments)
        if french:
            return f"Formulaire reçu ; {count} fichier(s) encore à envoyer"
        return f"Submission received; {count} file(s) still to send"
    if french:
        return "Le formulaire a bien été envoyé en entier !"
    return "full submission upload was successful!"
