"""Console pages of forms: the list with what arrived, uploading an XLSForm (pyxform's errors with sheet and
row), a form's versions, publishing, its state, its media files, and downloads of any version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response, redirect, request, url_for
from werkzeug.datastructures import FileStorage

from server.api import downloads
from server.auth import require
from server.console import bp
from server.console.pages import load_form, notice, render
from server.console.schemas import MediaForm, StateForm
from server.db.models.forms import FORM_STATES
from server.errors import ApiError
from server.services import form_jobs, overview
from server.services import forms as forms_svc
from server.store import db_session

_CHUNK = 256 * 1024


def _forms_page(project_id: int, status: int = 200, **context: Any) -> tuple[str, int]:
    session = db_session()
    return render(
        "forms.html",
        status,
        project=overview.get_project(session, project_id),
        rows=overview.form_rows(session, project_id),
        **context,
    )


@bp.get("/projects/<int:project_id>/forms")
def forms(project_id: int) -> tuple[str, int]:
    """A project's forms with submissions, last received, awaiting review and quarantined counts."""
    require("form.read", project_id)
    return _forms_page(project_id)


def _upload() -> FileStorage:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ApiError(400, "missing_file", "Choose a file to upload")
    return upload


@bp.post("/projects/<int:project_id>/forms")
def upload_form(project_id: int) -> Response | tuple[str, int]:
    """Upload an XLSForm (or XForm) as a draft; pyxform's errors come back next to the file field.

    A conversion that outlasts ``FORM_CONVERT_WAIT`` becomes a job: the answer is its page, which follows the
    job until the draft is stored (or shows why it was refused), as the API's 202 does.
    """
    principal = require("form.write", project_id)
    try:
        upload = _upload()
        limit = forms_svc.upload_settings().max_form_bytes
        outcome = form_jobs.upload_form(
            db_session(),
            project_id,
            upload.stream.read(limit + 1),
            upload.filename or "form",
            publish=False,
            actor=principal.actor,
        )
    except ApiError as error:
        return _forms_page(project_id, error.status, upload_error=error)
    if isinstance(outcome, form_jobs.ConversionJobInfo):
        return redirect(url_for("console.form_job", project_id=project_id, job_id=outcome.id))
    notice("draft_uploaded")
    return redirect(url_for("console.form", project_id=project_id, xml_form_id=outcome.xml_form_id))


@bp.get("/projects/<int:project_id>/forms/jobs/<int:job_id>")
def form_job(project_id: int, job_id: int) -> Response | tuple[str, int]:
    """A long conversion: its state while it runs (the page refreshes itself), then the draft or the refusal."""
    require("form.write", project_id)
    job = form_jobs.conversion_job(db_session(), project_id, job_id)
    if job.state == "done" and job.result is not None:
        notice("draft_uploaded")
        return redirect(url_for("console.form", project_id=project_id, xml_form_id=job.result["xml_form_id"]))
    if job.state == "failed" and job.error is not None:
        error = ApiError(
            int(job.error.get("status", 400)),
            str(job.error.get("code", "conversion_failed")),
            str(job.error.get("message", "")),
            job.error.get("details") or {},
        )
        return _forms_page(project_id, error.status, upload_error=error)
    session = db_session()
    return render("form_job.html", project=overview.get_project(session, project_id), job=job)


def _form_page(project_id: int, xml_form_id: str, status: int = 200, **context: Any) -> tuple[str, int]:
    session = db_session()
    detail = forms_svc.describe_form(session, project_id, xml_form_id)
    context.setdefault("errors", {})
    context.setdefault("media_name", None)
    return render(
        "form.html",
        status,
        project=overview.get_project(session, project_id),
        form=detail,
        states=FORM_STATES,
        names=overview.names_of(session, {v.created_by for v in detail.versions}),
        languages=overview.form_languages(session, project_id, xml_form_id),
        **context,
    )


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>")
def form(project_id: int, xml_form_id: str) -> tuple[str, int]:
    """A form: its versions (who published what, when), state, media files (missing ones listed), downloads."""
    require("form.read", project_id)
    return _form_page(project_id, xml_form_id)


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/publish")
def publish(project_id: int, xml_form_id: str) -> Response | tuple[str, int]:
    """Publish the form's draft."""
    principal = require("form.write", project_id)
    try:
        forms_svc.publish_draft(db_session(), project_id, xml_form_id, actor=principal.actor)
    except ApiError as error:
        if error.code == "not_found":
            raise
        return _form_page(project_id, xml_form_id, error.status, error=error)
    notice("published")
    return redirect(url_for("console.form", project_id=project_id, xml_form_id=xml_form_id))


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/state")
def set_state(project_id: int, xml_form_id: str) -> Response | tuple[str, int]:
    """Open, close to new phones (closing) or close a form."""
    principal = require("form.write", project_id)
    values, errors = load_form(StateForm())
    if errors:
        return _form_page(project_id, xml_form_id, 400, errors=errors)
    forms_svc.set_form_state(db_session(), project_id, xml_form_id, values["state"], actor=principal.actor)
    notice("state_changed")
    return redirect(url_for("console.form", project_id=project_id, xml_form_id=xml_form_id))


def _chunks(upload: FileStorage) -> Iterator[bytes]:
    while chunk := upload.stream.read(_CHUNK):
        yield chunk


@bp.post("/projects/<int:project_id>/forms/<xml_form_id>/media")
def upload_media(project_id: int, xml_form_id: str) -> Response | tuple[str, int]:
    """Upload one of the files the form expects (its name is chosen from the expected ones)."""
    principal = require("form.write", project_id)
    values, errors = load_form(MediaForm())
    if errors:
        return _form_page(project_id, xml_form_id, 400, errors=errors)
    try:
        upload = _upload()
        sent = upload.mimetype if upload.mimetype != "application/octet-stream" else None
        forms_svc.upload_attachment(
            db_session(),
            project_id,
            xml_form_id,
            values["name"],
            _chunks(upload),
            actor=principal.actor,
            content_type=sent,
        )
    except ApiError as error:
        if error.code == "not_found" and "xml_form_id" in error.details:
            raise
        return _form_page(project_id, xml_form_id, error.status, media_error=error, media_name=values["name"])
    notice("media_uploaded")
    return redirect(url_for("console.form", project_id=project_id, xml_form_id=xml_form_id))


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>/source")
def download_source(project_id: int, xml_form_id: str, version: str) -> Response:
    """Download the file a version was uploaded as (its XLSForm, or the XForm when one was uploaded)."""
    require("form.read", project_id)
    return downloads.version_source(*forms_svc.version_source(db_session(), project_id, xml_form_id, version))


@bp.get("/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>/xform")
def download_xform(project_id: int, xml_form_id: str, version: str) -> Response:
    """Download the XForm a version serves."""
    require("form.read", project_id)
    data = forms_svc.version_xform(db_session(), project_id, xml_form_id, version)
    return downloads.version_xform(data, xml_form_id, version)
