"""Queries of the forms area: forms, versions, attachments, conversion jobs, and the lean rows formList and
manifests need."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, exists, or_, select, text, update
from sqlalchemy.orm import Session

from server.db import pipeline
from server.db.models.accounts import AccessToken, AppUserForm
from server.db.models.forms import Form, FormAttachment, FormConversionJob, FormListStamp, FormVersion


@dataclass(frozen=True)
class FormListRow:
    """What one ``<xform>`` of a formList needs (never the XForm bytes)."""

    xml_form_id: str
    title: str
    version: str
    xform_md5: str
    has_manifest: bool


def get_form(session: Session, project_id: int, xml_form_id: str) -> Form | None:
    """Return the form ``xml_form_id`` of a project."""
    return session.scalars(
        select(Form).where(Form.project_id == project_id, Form.xml_form_id == xml_form_id)
    ).one_or_none()


def list_forms(session: Session, project_id: int) -> Sequence[Form]:
    """Return a project's forms by XForm id."""
    return session.scalars(select(Form).where(Form.project_id == project_id).order_by(Form.xml_form_id)).all()


def get_version(session: Session, form_id: int, version: str) -> FormVersion | None:
    """Return one version of a form by its version string."""
    return session.scalars(
        select(FormVersion).where(FormVersion.form_id == form_id, FormVersion.version == version)
    ).one_or_none()


def get_version_by_id(session: Session, version_id: int) -> FormVersion | None:
    """Return a form version by id."""
    return session.get(FormVersion, version_id)


def lock_form(session: Session, form_id: int) -> None:
    """Hold the form's row until the transaction ends (PostgreSQL; SQLite writers hold the database)."""
    session.execute(select(Form.id).where(Form.id == form_id).with_for_update())


def version_with_content(session: Session, form_id: int, content_sha256: str) -> FormVersion | None:
    """Return the form's most recent version made from this content (``FormVersion.content_sha256``)."""
    return session.scalars(
        select(FormVersion)
        .where(FormVersion.form_id == form_id, FormVersion.content_sha256 == content_sha256)
        .order_by(FormVersion.id.desc())
        .limit(1)
    ).first()


def version_strings(session: Session, form_id: int) -> list[str]:
    """Return every version string the form has."""
    return list(session.scalars(select(FormVersion.version).where(FormVersion.form_id == form_id)))


def list_versions(session: Session, form_id: int) -> Sequence[FormVersion]:
    """Return every version of a form, oldest first."""
    return session.scalars(select(FormVersion).where(FormVersion.form_id == form_id).order_by(FormVersion.id)).all()


def list_drafts(session: Session, form_id: int) -> Sequence[FormVersion]:
    """Return the draft versions of a form (normally at most one)."""
    return session.scalars(
        select(FormVersion)
        .where(FormVersion.form_id == form_id, FormVersion.status == "draft")
        .order_by(FormVersion.id.desc())
    ).all()


def list_attachments(session: Session, version_id: int) -> Sequence[FormAttachment]:
    """Return the attachments a form version expects, by name."""
    return session.scalars(
        select(FormAttachment).where(FormAttachment.form_version_id == version_id).order_by(FormAttachment.name)
    ).all()


def get_attachment(session: Session, version_id: int, name: str) -> FormAttachment | None:
    """Return one attachment of a form version."""
    return session.scalars(
        select(FormAttachment).where(FormAttachment.form_version_id == version_id, FormAttachment.name == name)
    ).one_or_none()


def _formlist_statement(filtered: bool) -> Select[str, str, str, str, bool]:
    has_attachments = (
        exists().where(FormAttachment.form_version_id == FormVersion.id).correlate(FormVersion).label("has_manifest")
    )
    stmt = (
        select(Form.xml_form_id, FormVersion.title, FormVersion.version, FormVersion.xform_md5, has_attachments)
        .join(FormVersion, FormVersion.id == Form.current_version_id)
        .where(Form.project_id == bindparam("project_id"), Form.state == "open")
        .order_by(Form.xml_form_id)
    )
    return stmt.where(Form.xml_form_id == bindparam("xml_form_id")) if filtered else stmt


# Built once: formList is the hottest read (benchmarked at >= 1,000 req/s), so no per-request
# statement construction; the compiled SQL is cached by SQLAlchemy per statement object.
_FORMLIST = _formlist_statement(False)
_FORMLIST_ONE = _formlist_statement(True)


def formlist_rows(session: Session, project_id: int, xml_form_id: str | None = None) -> list[FormListRow]:
    """Return the formList rows of a project in one query: open forms with a published version."""
    if xml_form_id is None:
        rows = session.connection().execute(_FORMLIST, {"project_id": project_id})
    else:
        rows = session.connection().execute(_FORMLIST_ONE, {"project_id": project_id, "xml_form_id": xml_form_id})
    return [FormListRow(*row) for row in rows.all()]


@dataclass(frozen=True)
class DeviceTokenRow:
    """The access-token columns OpenRosa authentication needs (a lean row, not the ORM object)."""

    id: int
    kind: str
    name: str
    project_id: int | None
    role: str | None
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None = None  # read with the token: a stale one is refreshed after the request
    form_access: str = "all"  # "assigned": an app user that sees and sends only the forms given to it


# The columns of ``DeviceTokenRow``, in its field order.
TOKEN_COLUMNS = (
    AccessToken.id,
    AccessToken.kind,
    AccessToken.name,
    AccessToken.project_id,
    AccessToken.role,
    AccessToken.revoked_at,
    AccessToken.expires_at,
    AccessToken.last_used_at,
    AccessToken.form_access,
)


def _token_formlist_statement(filtered: bool) -> Any:
    listing = _formlist_statement(filtered).add_columns(Form.id.label("form_id")).order_by(None).subquery("listing")
    # An app user (``form_access = 'assigned'``) sees only the forms assigned to it; a phone set up in
    # the console sees all of its project's.
    visible = or_(
        AccessToken.form_access == "all",
        exists().where(AppUserForm.token_id == AccessToken.id, AppUserForm.form_id == listing.c.form_id),
    )
    # The listing is joined only for a live device token of the asked project: nothing is read for others.
    joined = AccessToken.__table__.outerjoin(
        listing,
        and_(
            AccessToken.kind == "device",
            AccessToken.project_id == bindparam("project_id"),
            AccessToken.revoked_at.is_(None),
            visible,
        ),
    )
    return (
        select(*TOKEN_COLUMNS, *(column for column in listing.c if column.name != "form_id"))
        .select_from(joined)
        .where(AccessToken.token_hash == bindparam("token_hash"))
        .order_by(listing.c.xml_form_id)
    )


_TOKEN_FORMLIST = {False: _token_formlist_statement(False), True: _token_formlist_statement(True)}


def token_formlist_rows(
    session: Session, token_hash: str, project_id: int, xml_form_id: str | None = None
) -> list[FormListRow]:
    """Return the formList rows a live device token of the project sees (its assigned forms, for an app user)."""
    params: dict[str, Any] = {"token_hash": token_hash, "project_id": project_id}
    if xml_form_id is not None:
        params["xml_form_id"] = xml_form_id
    rows = session.connection().execute(_TOKEN_FORMLIST[xml_form_id is not None], params).all()
    width = len(TOKEN_COLUMNS)
    return [FormListRow(*row[width:]) for row in rows if row[width] is not None]


def touch_formlist_stamp(session: Session, project_id: int) -> None:
    """Draw the project's formList stamp anew (in the caller's transaction): for changes no trigger sees."""
    session.execute(
        text(
            "INSERT INTO formlist_stamps (project_id, stamp) VALUES (:project_id, :stamp) "
            "ON CONFLICT (project_id) DO UPDATE SET stamp = excluded.stamp"
        ),
        {"project_id": project_id, "stamp": secrets.randbits(62)},
    )


_TOKEN_ROW = select(*TOKEN_COLUMNS).where(AccessToken.token_hash == bindparam("token_hash"))


def get_token_row(session: Session, token_hash: str) -> DeviceTokenRow | None:
    """Return the lean row of the access token whose sha256 is ``token_hash`` (no ORM object)."""
    # Straight on the driver: this runs on every OpenRosa request (see ``pipeline.first_row``).
    row = pipeline.first_row(session, _TOKEN_ROW, {"token_hash": token_hash})
    return DeviceTokenRow(*row) if row is not None else None


_STAMP = select(FormListStamp.stamp).where(FormListStamp.project_id == bindparam("project_id")).scalar_subquery()
_TOKEN_AND_STAMP = select(*TOKEN_COLUMNS, _STAMP).where(AccessToken.token_hash == bindparam("token_hash"))
_STAMP_ONLY = select(_STAMP)


def token_and_formlist_stamp(
    session: Session | Connection, token_hash: str, project_id: int
) -> tuple[DeviceTokenRow, int] | None:
    """Return a path token's row and the project's formList stamp (0 before any form), in one query.

    ``None`` when no token has this hash. The stamp moves in the transaction of any change to the
    formList (triggers of migration 0023), so an unchanged stamp means an unchanged formList. On a
    session, or on a Core connection for a read outside any session (the formList shortcut).
    """
    row = pipeline.first_row(session, _TOKEN_AND_STAMP, {"token_hash": token_hash, "project_id": project_id})
    if row is None:
        return None
    return DeviceTokenRow(*row[: len(TOKEN_COLUMNS)]), int(row[len(TOKEN_COLUMNS)] or 0)


def formlist_stamp(session: Session, project_id: int) -> int:
    """Return the project's formList stamp (0 before any form)."""
    row = pipeline.first_row(session, _STAMP_ONLY, {"project_id": project_id})
    return int(row[0] or 0) if row is not None else 0


def get_current_xform(session: Session, project_id: int, xml_form_id: str) -> tuple[str, bytes] | None:
    """Return (md5, bytes) of the published XForm of a form that is not closed, in one query."""
    row = session.execute(
        select(FormVersion.xform_md5, FormVersion.xform)
        .join(Form, FormVersion.id == Form.current_version_id)
        .where(Form.project_id == project_id, Form.xml_form_id == xml_form_id, Form.state != "closed")
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


def project_uses_entity_list(session: Session, project_id: int, file_name: str) -> bool:
    """Tell whether a published version of the project's forms serves ``file_name`` as an entity list."""
    stmt = (
        select(FormAttachment.id)
        .join(FormVersion, FormVersion.id == FormAttachment.form_version_id)
        .join(Form, Form.id == FormVersion.form_id)
        .where(
            Form.project_id == project_id,
            FormVersion.status == "published",
            FormAttachment.kind == "entity_list",
            FormAttachment.name == file_name,
        )
        .limit(1)
    )
    return session.execute(stmt).first() is not None


# ---------------------------------------------------------------------------------------------
# Conversion jobs: every state change is an UPDATE guarded by the state it leaves (compare-and-set).


def get_job(session: Session, project_id: int, job_id: int) -> FormConversionJob | None:
    """Return a conversion job of a project."""
    return session.scalars(
        select(FormConversionJob).where(FormConversionJob.id == job_id, FormConversionJob.project_id == project_id)
    ).one_or_none()


def claim_job(session: Session, job_id: int, worker: str, now: datetime) -> bool:
    """Move a queued job to running for ``worker``; tell whether this call won it."""
    result = session.execute(
        update(FormConversionJob)
        .where(FormConversionJob.id == job_id, FormConversionJob.state == "queued")
        .values(state="running", claimed_by=worker, started_at=now)
        .execution_options(synchronize_session=False)
    )
    return _one_row(result)


def finish_job(
    session: Session,
    job_id: int,
    worker: str,
    now: datetime,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """Move ``worker``'s running job to done (``result``) or failed (``error``); tell whether it was still its."""
    outcome = session.execute(
        update(FormConversionJob)
        .where(
            FormConversionJob.id == job_id,
            FormConversionJob.state == "running",
            FormConversionJob.claimed_by == worker,
        )
        .values(state="done" if error is None else "failed", result=result, error=error, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return _one_row(outcome)


def fail_job(session: Session, job_id: int, seen_state: str, error: dict[str, Any], now: datetime) -> bool:
    """Mark a job failed if it is still in ``seen_state`` (a lost job, found by whoever polls it)."""
    outcome = session.execute(
        update(FormConversionJob)
        .where(FormConversionJob.id == job_id, FormConversionJob.state == seen_state)
        .values(state="failed", error=error, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return _one_row(outcome)


def _one_row(result: Any) -> bool:
    return bool(result.rowcount == 1)


def app_user_has_form(session: Session, token_id: int, form_pk: int) -> bool:
    """Tell whether the form ``form_pk`` is assigned to the app user ``token_id``."""
    return (
        session.execute(
            select(AppUserForm.form_id).where(AppUserForm.token_id == token_id, AppUserForm.form_id == form_pk)
        ).first()
        is not None
    )
