"""Form use cases: upload and convert a form version, publish it, change a form's state, form attachments.

Rules (issue 3, docs/reference/peers.md §1.2):
- a form is known by its XForm id in a project and keeps every version; a version string is unique per
  form and never reused with other content (``409 version_reused``); the identical re-upload of a
  version is idempotent; a draft may be replaced by a new upload;
- a form has at most one draft; publishing makes it the version devices download;
- attachments expected by a version come from its schema; files uploaded for an earlier version carry
  over by name; ``itemsets.csv`` is published from pyxform's output; entity lists are generated CSV.
Conversion runs before the transaction (it can take seconds, see ``server.services.form_conversion``),
so a failed upload leaves nothing behind: no form, version, attachment or blob row.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from flask import current_app, has_app_context
from sqlalchemy import Connection, Table, delete
from sqlalchemy.orm import Session

from forms.convert import ConvertedForm
from forms.errors import FormError, localized_message
from forms.identity import next_version, restamp_version, stamp_version
from forms.schema import FormSchema
from server.auth import Principal
from server.blobstore import BlobStore, blob_store
from server.db.base import utcnow
from server.db.models.forms import FORM_STATES, Form, FormAttachment, FormVersion
from server.db.queries import audit
from server.db.queries import forms as q
from server.db.transaction import transaction
from server.db.upsert import insert_ignore
from server.errors import ApiError, bad_request, conflict, not_found, too_large
from server.services.form_conversion import ConversionTimeout, TimedConversion, convert_with_limit
from server.services.outbox import record_event

ENTITY_SYSTEM_COLUMNS = ("name", "label", "__version", "__trunkVersion", "__branchId")
DEFAULT_MAX_FORM_BYTES = 20 * 1024 * 1024
# FormError codes that mean "too big" rather than "wrong": answered with 413.
_TOO_LARGE_CODES = {"spreadsheet_too_large"}
_CONTENT_TYPES = {
    "csv": "text/csv",
    "itemsets": "text/csv",
    "entity_list": "text/csv",
    "xml": "text/xml",
    "geojson": "application/geo+json",
}


@dataclass(frozen=True)
class UploadSettings:
    """How uploads are converted and bounded (from the app config)."""

    max_form_bytes: int = DEFAULT_MAX_FORM_BYTES
    convert_timeout: float = 60.0
    convert_inline: bool = False
    max_attachment_bytes: int = 50 * 1024 * 1024
    # How long an upload request waits for its conversion before answering 202 with a job to poll.
    convert_wait: float = 2.0


@dataclass(frozen=True)
class FormVersionResult:
    """What an upload or a publication did: the form, the version, and whether a row was created."""

    form_db_id: int
    xml_form_id: str
    version: str
    version_id: int
    status: str
    created: bool
    title: str
    conversion_seconds: float | None
    warnings: tuple[str, ...]
    missing_attachments: tuple[str, ...] = ()
    version_generated: bool = False


@dataclass(frozen=True)
class AttachmentInfo:
    """One expected attachment of a form version and whether its file is present."""

    name: str
    kind: str
    present: bool
    md5: str | None = None
    size: int | None = None
    uploaded_at: Any = None


@dataclass(frozen=True)
class VersionInfo:
    """A version in a form's detail."""

    version: str
    status: str
    title: str
    xform_md5: str
    source_filename: str
    source_kind: str
    warnings: tuple[str, ...]
    conversion_seconds: float | None
    created_at: Any
    published_at: Any
    created_by: str


@dataclass(frozen=True)
class FormDetail:
    """A form with its versions, warnings and attachments (of the draft if any, else the published one)."""

    id: int
    xml_form_id: str
    title: str
    state: str
    current_version: str | None
    draft_version: str | None
    created_at: Any
    updated_at: Any
    versions: tuple[VersionInfo, ...] = ()
    attachments: tuple[AttachmentInfo, ...] = ()
    missing_attachments: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    project_id: int | None = None
    # The published version's (else the draft's) XForm md5 and publication time, as Central reports them.
    hash: str | None = None
    published_at: Any = None


def upload_settings(config: Any | None = None) -> UploadSettings:
    """Read the upload settings from ``config`` (default: the current app's, else the defaults)."""
    if config is None:
        if not has_app_context():
            return UploadSettings()
        config = current_app.config
    return UploadSettings(
        max_form_bytes=int(config.get("MAX_FORM_BYTES", DEFAULT_MAX_FORM_BYTES)),
        convert_timeout=float(config.get("FORM_CONVERT_TIMEOUT", 60.0)),
        convert_inline=bool(config.get("FORM_CONVERT_INLINE", False)),
        convert_wait=float(config.get("FORM_CONVERT_WAIT", 2.0)),
        max_attachment_bytes=int(config.get("MAX_FORM_ATTACHMENT_BYTES", config.get("MAX_SUBMISSION_BYTES", 0)))
        or 50 * 1024 * 1024,
    )


def _blob_store(blobs: BlobStore | None) -> BlobStore:
    if blobs is not None:
        return blobs
    from server.store import get_store

    return blob_store(get_store().storage_dir)


def form_error_to_api(err: FormError) -> ApiError:
    """Turn a conversion ``FormError`` into a 400 (413 for size) that keeps pyxform's words and row."""
    status = 413 if err.code in _TOO_LARGE_CODES else 400
    french = localized_message(err, "fr")
    # The console shows the reader's message_<lang>; OpenRosa-style callers get French by Accept-Language.
    details = {"reason": err.message, **err.context, "message_fr": french, "message_ar": localized_message(err, "ar")}
    return ApiError(status, err.code, err.message, details, message_fr=french)


def check_form_upload(data: bytes, settings: UploadSettings) -> None:
    """Refuse an empty upload (400) or one past ``MAX_FORM_BYTES`` (413) before any conversion."""
    if len(data) > settings.max_form_bytes:
        raise too_large(settings.max_form_bytes, "form file")
    if not data:
        raise bad_request("empty_upload", "The uploaded file is empty")


def conversion_error_to_api(exc: FormError | ConversionTimeout) -> ApiError:
    """Turn a failed conversion into the answer the admin gets: pyxform's 400/413, or 422 past the time limit."""
    if isinstance(exc, FormError):
        return form_error_to_api(exc)
    limit, elapsed = exc.limit_seconds, exc.elapsed_seconds
    french = f"La conversion du formulaire a dépassé la limite de {limit:g} s (arrêtée après {elapsed:.1f} s)."
    arabic = f"تجاوز تحويل الاستمارة الحدّ المسموح به وهو {limit:g} ث (أُوقف بعد {elapsed:.1f} ث)."
    return ApiError(
        422,
        "conversion_timeout",
        f"Converting this form took longer than the limit of {limit:g} s and was stopped "
        f"after {elapsed:.1f} s. Split very large repeats or ask an admin to raise "
        "FORM_CONVERT_TIMEOUT.",
        {
            "limit_seconds": limit,
            "elapsed_seconds": round(elapsed, 3),
            "message_fr": french,
            "message_ar": arabic,
        },
        message_fr=french,
    )


def converted_or_raise(timed: TimedConversion) -> tuple[ConvertedForm, float]:
    """Return (form, seconds) of a finished conversion, refusing a form that still has no id."""
    if not timed.converted.schema.form_id:
        raise bad_request("missing_form_id", "The form has no id (settings sheet, form_id column)")
    return timed.converted, timed.seconds


def convert_form_upload(
    data: bytes, filename: str, settings: UploadSettings, default_form_id: str | None = None
) -> tuple[ConvertedForm, float]:
    """Convert an upload within the limits; raise ``ApiError`` (400/413/422) for anything wrong."""
    check_form_upload(data, settings)
    try:
        timed = convert_with_limit(
            data,
            filename,
            timeout=settings.convert_timeout,
            inline=settings.convert_inline,
            default_form_id=default_form_id,
        )
    except (FormError, ConversionTimeout) as exc:
        raise conversion_error_to_api(exc) from None
    return converted_or_raise(timed)


def create_form_version(
    session: Session,
    project_id: int,
    data: bytes,
    filename: str,
    *,
    publish: bool,
    actor: str,
    settings: UploadSettings | None = None,
    blobs: BlobStore | None = None,
    default_form_id: str | None = None,
    generate_version: bool = True,
) -> FormVersionResult:
    """Convert an upload and store it as a draft (or published) version of its form (409 on a reused version).

    ``default_form_id`` names a workbook without settings/form_id (like ODK Central's
    ``X-XlsForm-FormId-Fallback``); without it the file name does (``forms.identity``).
    ``generate_version=False`` keeps a missing version empty, as the server the form comes from did
    (data collected elsewhere with the versionless XForm then matches it).
    """
    settings = settings or upload_settings()
    converted, seconds = convert_form_upload(data, filename, settings, default_form_id)
    with transaction(session):
        return store_version_rows(
            session,
            project_id,
            converted,
            data,
            filename,
            seconds,
            publish=publish,
            actor=actor,
            blobs=blobs,
            generate_version=generate_version,
        )


def content_sha256(converted: ConvertedForm) -> str:
    """Return the hash that says two uploads are the same form: the XForm as converted, and itemsets.csv."""
    digest = hashlib.sha256(converted.xform)
    digest.update(b"\0")
    digest.update(converted.itemsets or b"")
    return digest.hexdigest()


def _with_version(converted: ConvertedForm, version: str) -> ConvertedForm:
    return dataclasses.replace(
        converted,
        xform=stamp_version(converted.xform, version),
        schema=dataclasses.replace(converted.schema, version=version),
    )


def store_version_rows(
    session: Session,
    project_id: int,
    converted: ConvertedForm,
    data: bytes,
    filename: str,
    seconds: float,
    *,
    publish: bool,
    actor: str,
    blobs: BlobStore | None = None,
    generate_version: bool = True,
) -> FormVersionResult:
    """Store a converted upload as a version of its form, inside the caller's transaction.

    A spreadsheet without a version gets a generated one (``yyyymmddnn``), unless its content equals
    a version the form has: then the upload is a no-op answered with that version (one content, one
    version string, so devices and submissions agree). With ``publish`` the answered version is the
    one devices get afterwards (a draft is published, an older version made current again). A
    conversion job commits this together with its own state.
    """
    store = _blob_store(blobs)
    content = content_sha256(converted)
    generate = generate_version and converted.schema.version == "" and converted.source_kind != "xform"
    form_id = _ensure_form(session, project_id, converted.schema)
    same: FormVersion | None = None
    if generate:
        # Under the form's row lock (SQLite: the write lock of BEGIN IMMEDIATE) two uploads of
        # one form choose their versions one after the other: identical ones end as one version.
        q.lock_form(session, form_id)
        same = q.version_with_content(session, form_id, content)
        if same is None:
            converted = _with_version(converted, next_version(q.version_strings(session, form_id), utcnow().date()))
    schema = converted.schema
    xform_sha256 = hashlib.sha256(converted.xform).hexdigest()
    if same is not None:
        version, created = same, False
    else:
        values = _version_values(converted, data, filename, seconds, actor)
        values["content_sha256"] = content
        values["version_generated"] = generate
        version, created = _place_version(session, form_id, schema, values, xform_sha256)
    form = session.get(Form, form_id)
    assert form is not None
    _sync_attachments(session, form, version, schema, converted.itemsets, store)
    republished = publish and version.status == "published" and form.current_version_id != version.id
    if publish and (version.status == "draft" or republished):
        # ?publish=true means "devices get this content": an older version uploaded again becomes current.
        _publish(session, form, version)
    session.flush()
    if created or publish:
        audit.record(
            session,
            actor,
            "form.version_published" if version.status == "published" else "form.draft_uploaded",
            project_id,
            f"form:{schema.form_id}",
            {
                "version": version.version,
                "version_generated": version.version_generated,
                "filename": filename,
                "sha256": version.xform_sha256,
                "created": created,
                "conversion_seconds": round(seconds, 3),
            },
        )
    return _result(session, form, version, created, seconds)


def _place_version(
    session: Session, form_id: int, schema: FormSchema, values: dict[str, Any], xform_sha256: str
) -> tuple[FormVersion, bool]:
    """Insert the version row, or meet the existing one of that string: (row, whether it is new content)."""
    version_id = insert_ignore(
        session, cast(Table, FormVersion.__table__), {"form_id": form_id, **values}, ["form_id", "version"], "id"
    )
    if version_id is not None:
        version = session.get(FormVersion, version_id)
        assert version is not None
        _drop_other_drafts(session, form_id, keep=version.id)
        return version, True
    # The version string exists (maybe inserted by a concurrent request): same bytes → the
    # same version again; other bytes → replace it only while it is a draft.
    existing = q.get_version(session, form_id, schema.version)
    assert existing is not None
    if existing.xform_sha256 == xform_sha256:
        return existing, False
    if existing.status != "draft":
        raise conflict(
            "version_reused",
            f"Version {schema.version!r} of form {schema.form_id!r} is already published with "
            "other content: change the version in the settings sheet and upload again.",
            xml_form_id=schema.form_id,
            version=schema.version,
        )
    for key, value in values.items():
        setattr(existing, key, value)
    existing.created_at = utcnow()
    return existing, True


def _ensure_form(session: Session, project_id: int, schema: FormSchema) -> int:
    new_id = insert_ignore(
        session,
        cast(Table, Form.__table__),
        {
            "project_id": project_id,
            "xml_form_id": schema.form_id,
            "title": schema.title,
            "state": "open",
            "created_at": utcnow(),
            "updated_at": utcnow(),
        },
        ["project_id", "xml_form_id"],
        "id",
    )
    if new_id is not None:
        return int(new_id)
    form = q.get_form(session, project_id, schema.form_id)
    assert form is not None
    return form.id


def _version_values(converted: ConvertedForm, data: bytes, filename: str, seconds: float, actor: str) -> dict[str, Any]:
    schema = converted.schema
    return {
        "version": schema.version,
        "status": "draft",
        "title": schema.title,
        "xform": converted.xform,
        "xform_md5": hashlib.md5(converted.xform, usedforsecurity=False).hexdigest(),
        "xform_sha256": hashlib.sha256(converted.xform).hexdigest(),
        "source": data,
        "source_filename": filename[:255],
        "source_kind": converted.source_kind,
        "schema_json": schema.to_json(),
        "warnings": list(converted.warnings),
        "itemsets": converted.itemsets,
        "conversion_seconds": round(seconds, 3),
        "created_at": utcnow(),
        "created_by": actor,
    }


def _drop_other_drafts(session: Session, form_id: int, keep: int) -> None:
    # One draft per form (like ODK Central): a new draft replaces the previous unpublished one.
    for draft in q.list_drafts(session, form_id):
        if draft.id != keep:
            session.execute(delete(FormAttachment).where(FormAttachment.form_version_id == draft.id))
            session.execute(delete(FormVersion).where(FormVersion.id == draft.id))


def _expected_media(schema: FormSchema) -> dict[str, str]:
    expected: dict[str, str] = {}
    for ref in schema.media:
        expected.setdefault(ref.file_name, ref.kind)
    return expected


def _sync_attachments(
    session: Session, form: Form, version: FormVersion, schema: FormSchema, itemsets: bytes | None, blobs: BlobStore
) -> None:
    """Make the version's attachment rows match what its schema expects, carrying files over by name."""
    expected = _expected_media(schema)
    existing = {a.name: a for a in q.list_attachments(session, version.id)}
    for name, stale in existing.items():
        if name not in expected:
            session.delete(stale)
    previous: dict[str, FormAttachment] = {}
    if form.current_version_id is not None and form.current_version_id != version.id:
        previous = {a.name: a for a in q.list_attachments(session, form.current_version_id)}
    for name, kind in expected.items():
        found = existing.get(name)
        if found is None:
            found = FormAttachment(form_version_id=version.id, name=name, kind=kind)
            session.add(found)
        row = found
        row.kind = kind
        if kind == "entity_list":
            row.blob_sha256 = row.md5 = row.size = row.content_type = row.uploaded_at = None
        elif kind == "itemsets" and itemsets is not None:
            _attach_bytes(session, blobs, row, itemsets, "text/csv")
        elif row.blob_sha256 is None and name in previous and previous[name].blob_sha256 is not None:
            old = previous[name]
            row.blob_sha256, row.md5, row.size = old.blob_sha256, old.md5, old.size
            row.content_type, row.uploaded_at = old.content_type, old.uploaded_at
    session.flush()


def _attach_bytes(session: Session, blobs: BlobStore, row: FormAttachment, data: bytes, content_type: str) -> None:
    row.blob_sha256 = blobs.put_bytes(session, data, content_type)
    row.md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    row.size = len(data)
    row.content_type = content_type
    row.uploaded_at = utcnow()


def _publish(session: Session, form: Form, version: FormVersion) -> None:
    version.status = "published"
    version.published_at = utcnow()
    form.current_version_id = version.id
    form.title = version.title
    form.updated_at = utcnow()
    record_event(
        session,
        form.project_id,
        "form.published",
        f"form:{form.xml_form_id}",
        {"xml_form_id": form.xml_form_id, "version": version.version, "title": version.title},
        form_id=form.xml_form_id,
    )


def _missing(session: Session, version_id: int) -> tuple[str, ...]:
    return tuple(
        a.name for a in q.list_attachments(session, version_id) if a.kind != "entity_list" and a.blob_sha256 is None
    )


def _result(
    session: Session, form: Form, version: FormVersion, created: bool, seconds: float | None
) -> FormVersionResult:
    return FormVersionResult(
        form_db_id=form.id,
        xml_form_id=form.xml_form_id,
        version=version.version,
        version_id=version.id,
        status=version.status,
        created=created,
        title=version.title,
        conversion_seconds=round(seconds, 3) if seconds is not None else None,
        warnings=tuple(version.warnings or ()),
        missing_attachments=_missing(session, version.id),
        version_generated=version.version_generated,
    )


def _get_form(session: Session, project_id: int, xml_form_id: str) -> Form:
    form = q.get_form(session, project_id, xml_form_id)
    if form is None:
        raise not_found("form", xml_form_id=xml_form_id)
    return form


def draft_from_published(session: Session, project_id: int, xml_form_id: str, *, actor: str) -> FormVersionResult:
    """Start a draft as a copy of the published version (Central's ``POST .../draft`` with no body).

    The copy is the published XForm under a generated version (``yyyymmddnn``: a version string is
    never shared by two versions), with the published files carried over by name; it replaces any
    draft. Publishing it with ``?version=`` names it as the caller wants (pyodk's ``version_updater``).
    """
    with transaction(session):
        form = _get_form(session, project_id, xml_form_id)
        q.lock_form(session, form.id)
        if form.current_version_id is None:
            raise ApiError(
                404, "no_published_version", f"Form {xml_form_id!r} has no published version to copy into a draft",
                {"xml_form_id": xml_form_id},
            )  # fmt: skip
        published = q.get_version_by_id(session, form.current_version_id)
        assert published is not None
        version = next_version(q.version_strings(session, form.id), utcnow().date())
        xform = restamp_version(published.xform, version)
        schema = dataclasses.replace(FormSchema.from_json(published.schema_json), version=version)
        values = {
            "version": version,
            "status": "draft",
            "title": published.title,
            "xform": xform,
            "xform_md5": hashlib.md5(xform, usedforsecurity=False).hexdigest(),
            "xform_sha256": hashlib.sha256(xform).hexdigest(),
            "source": published.source,
            "source_filename": published.source_filename,
            "source_kind": published.source_kind,
            "schema_json": schema.to_json(),
            "warnings": list(published.warnings or ()),
            "itemsets": published.itemsets,
            "conversion_seconds": None,
            "content_sha256": published.content_sha256,
            "version_generated": True,
            "created_at": utcnow(),
            "created_by": actor,
        }
        draft, _ = _place_version(session, form.id, schema, values, values["xform_sha256"])
        _sync_attachments(session, form, draft, schema, published.itemsets, _blob_store(None))
        session.flush()
        audit.record(
            session, actor, "form.draft_uploaded", project_id, f"form:{xml_form_id}",
            {"version": version, "version_generated": True, "copied_from": published.version, "created": True},
        )  # fmt: skip
        return _result(session, form, draft, True, None)


def publish_draft(
    session: Session, project_id: int, xml_form_id: str, *, actor: str, expected_version: str | None = None
) -> FormVersionResult:
    """Publish the form's draft: it becomes the version devices download (404 when there is no draft).

    With ``expected_version`` (Central's ``?version=``) the draft is published under that version: its
    XForm's version is rewritten, as Central does (a draft has no submissions yet, so nothing names the
    old string). A version string the form already has is ``409 version_reused``.
    """
    with transaction(session):
        form = _get_form(session, project_id, xml_form_id)
        q.lock_form(session, form.id)  # an upload choosing a version waits: the new string stays free
        drafts = q.list_drafts(session, form.id)
        if not drafts:
            raise ApiError(
                404, "no_draft", f"Form {xml_form_id!r} has no draft to publish", {"xml_form_id": xml_form_id}
            )
        version = drafts[0]
        wanted = expected_version.strip() if expected_version is not None else None
        if wanted == "":
            raise bad_request("invalid_version", "?version= must not be empty", version=expected_version)
        if wanted is not None and wanted != version.version:
            if wanted in q.version_strings(session, form.id):
                raise conflict(
                    "version_reused",
                    f"Form {xml_form_id!r} already has a version {wanted!r}: publish the draft under another one",
                    xml_form_id=xml_form_id,
                    version=wanted,
                )
            _rename_draft(version, wanted)
            session.flush()
        _publish(session, form, version)
        session.flush()
        audit.record(
            session, actor, "form.version_published", project_id, f"form:{xml_form_id}", {"version": version.version}
        )
        return _result(session, form, version, False, version.conversion_seconds)


def _rename_draft(version: FormVersion, wanted: str) -> None:
    """Give a draft another version string, in its row, its XForm and its schema."""
    xform = restamp_version(version.xform, wanted)
    version.version = wanted
    version.xform = xform
    version.xform_md5 = hashlib.md5(xform, usedforsecurity=False).hexdigest()
    version.xform_sha256 = hashlib.sha256(xform).hexdigest()
    version.schema_json = dataclasses.replace(FormSchema.from_json(version.schema_json), version=wanted).to_json()
    version.version_generated = False


def set_form_state(session: Session, project_id: int, xml_form_id: str, state: str, *, actor: str) -> FormDetail:
    """Set a form's state: ``open`` (listed, accepts), ``closing`` (not listed, accepts), ``closed``."""
    if state not in FORM_STATES:
        raise bad_request("invalid_state", f"state must be one of {', '.join(FORM_STATES)}", state=state)
    with transaction(session):
        form = _get_form(session, project_id, xml_form_id)
        before = form.state
        if before != state:
            form.state = state
            form.updated_at = utcnow()
            audit.record(
                session,
                actor,
                "form.state_changed",
                project_id,
                f"form:{xml_form_id}",
                {"from": before, "to": state},
            )
        session.flush()
    return describe_form(session, project_id, xml_form_id)


def _attachment_version(session: Session, form: Form) -> FormVersion | None:
    drafts = q.list_drafts(session, form.id)
    if drafts:
        return drafts[0]
    if form.current_version_id is None:
        return None
    return q.get_version_by_id(session, form.current_version_id)


def _attachment_infos(session: Session, version_id: int) -> tuple[AttachmentInfo, ...]:
    return tuple(
        AttachmentInfo(
            name=a.name,
            kind=a.kind,
            present=a.kind == "entity_list" or a.blob_sha256 is not None,
            md5=a.md5,
            size=a.size,
            uploaded_at=a.uploaded_at,
        )
        for a in q.list_attachments(session, version_id)
    )


def describe_form(session: Session, project_id: int, xml_form_id: str) -> FormDetail:
    """Return a form's metadata, every version, its warnings and its attachments (missing ones listed)."""
    form = _get_form(session, project_id, xml_form_id)
    versions = q.list_versions(session, form.id)
    current = next((v for v in versions if v.id == form.current_version_id), None)
    draft = next((v for v in reversed(versions) if v.status == "draft"), None)
    shown = draft or current
    attachments = _attachment_infos(session, shown.id) if shown is not None else ()
    return FormDetail(
        id=form.id,
        xml_form_id=form.xml_form_id,
        title=form.title,
        state=form.state,
        current_version=current.version if current else None,
        draft_version=draft.version if draft else None,
        created_at=form.created_at,
        updated_at=form.updated_at,
        project_id=form.project_id,
        hash=(current or draft).xform_md5 if (current or draft) else None,
        published_at=current.published_at if current else None,
        versions=tuple(_version_info(v) for v in versions),
        attachments=attachments,
        missing_attachments=tuple(a.name for a in attachments if not a.present),
        warnings=tuple(shown.warnings or ()) if shown is not None else (),
    )


def _version_info(v: FormVersion) -> VersionInfo:
    return VersionInfo(
        version=v.version,
        status=v.status,
        title=v.title,
        xform_md5=v.xform_md5,
        source_filename=v.source_filename,
        source_kind=v.source_kind,
        warnings=tuple(v.warnings or ()),
        conversion_seconds=v.conversion_seconds,
        created_at=v.created_at,
        published_at=v.published_at,
        created_by=v.created_by,
    )


def list_form_details(session: Session, project_id: int) -> list[FormDetail]:
    """Return every form of a project with its current and draft versions (no per-version detail)."""
    result = []
    for form in q.list_forms(session, project_id):
        versions = q.list_versions(session, form.id)
        current = next((v for v in versions if v.id == form.current_version_id), None)
        draft = next((v for v in reversed(versions) if v.status == "draft"), None)
        result.append(
            FormDetail(
                id=form.id,
                xml_form_id=form.xml_form_id,
                title=form.title,
                state=form.state,
                current_version=current.version if current else None,
                draft_version=draft.version if draft else None,
                created_at=form.created_at,
                updated_at=form.updated_at,
                project_id=form.project_id,
                hash=(current or draft).xform_md5 if (current or draft) else None,
                published_at=current.published_at if current else None,
            )
        )
    return result


def _version_for(session: Session, form: Form, version: str | None) -> FormVersion:
    """Return the named version, else the published one, else the draft (404 when none)."""
    if version is not None:
        found = q.get_version(session, form.id, version)
    elif form.current_version_id is not None:
        found = q.get_version_by_id(session, form.current_version_id)
    else:
        found = _attachment_version(session, form)
    if found is None:
        raise not_found("form version", xml_form_id=form.xml_form_id, version=version)
    return found


def form_schema(session: Session, project_id: int, xml_form_id: str, version: str | None = None) -> dict[str, Any]:
    """Return the JSON ``FormSchema`` of a version (default: the published one, else the draft)."""
    form = _get_form(session, project_id, xml_form_id)
    found = _version_for(session, form, version)
    schema: dict[str, Any] = found.schema_json
    return schema


def version_source(session: Session, project_id: int, xml_form_id: str, version: str) -> tuple[str, str, bytes]:
    """Return (file name, kind, bytes) of the original upload of a version."""
    form = _get_form(session, project_id, xml_form_id)
    found = _version_for(session, form, version)
    return found.source_filename, found.source_kind, found.source


def version_xform(session: Session, project_id: int, xml_form_id: str, version: str) -> bytes:
    """Return the XForm bytes a version serves (its conversion, for any version, draft or published)."""
    form = _get_form(session, project_id, xml_form_id)
    return _version_for(session, form, version).xform


def list_form_attachments(
    session: Session, project_id: int, xml_form_id: str
) -> tuple[str | None, tuple[AttachmentInfo, ...]]:
    """Return (version, attachments expected vs present) of the draft, else the published version."""
    form = _get_form(session, project_id, xml_form_id)
    version = _attachment_version(session, form)
    if version is None:
        return None, ()
    return version.version, _attachment_infos(session, version.id)


class _Hashing:
    """Pass chunks through while counting their md5 and size (the blob store only computes sha256)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = chunks
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.md5.update(chunk)
            self.size += len(chunk)
            yield chunk


def upload_attachment(
    session: Session,
    project_id: int,
    xml_form_id: str,
    name: str,
    chunks: Iterable[bytes],
    *,
    actor: str,
    content_type: str | None = None,
    settings: UploadSettings | None = None,
    blobs: BlobStore | None = None,
) -> AttachmentInfo:
    """Store a file the draft (else the published version) expects under ``name`` (404 if not expected)."""
    settings = settings or upload_settings()
    store = _blob_store(blobs)
    with transaction(session):
        form = _get_form(session, project_id, xml_form_id)
        version = _attachment_version(session, form)
        row = q.get_attachment(session, version.id, name) if version is not None else None
        if version is None or row is None:
            raise ApiError(
                404,
                "attachment_not_expected",
                f"Form {xml_form_id!r} does not use a file named {name!r}",
                {"xml_form_id": xml_form_id, "name": name},
            )
        if row.kind == "entity_list":
            raise conflict(
                "attachment_generated",
                f"{name!r} is an entity list: Fieldsync generates it from the project's entities",
                name=name,
            )
        hashing = _Hashing(chunks)
        kind_type = content_type or _CONTENT_TYPES.get(row.kind, "application/octet-stream")
        sha = store.put_chunks(session, hashing, kind_type, settings.max_attachment_bytes)
        size = hashing.size
        row.blob_sha256, row.md5, row.size = sha, hashing.md5.hexdigest(), size
        row.content_type, row.uploaded_at = kind_type, utcnow()
        session.flush()
        audit.record(
            session,
            actor,
            "form.attachment_uploaded",
            project_id,
            f"form:{xml_form_id}",
            {"version": version.version, "name": name, "sha256": sha, "size": size},
        )
        return AttachmentInfo(
            name=row.name, kind=row.kind, present=True, md5=row.md5, size=size, uploaded_at=row.uploaded_at
        )


# ---------------------------------------------------------------------------------------------
# Entity lists: the sync area owns the entities table and re-implements these two functions.


def entity_list_properties(schema: FormSchema, list_name: str) -> tuple[str, ...]:
    """Return the properties a form saves to ``list_name``, in declaration order."""
    seen: dict[str, None] = {}
    for declaration in schema.entities:
        if declaration.list_name == list_name:
            for prop in declaration.properties:
                seen.setdefault(prop, None)
    return tuple(seen)


def entity_list_csv(session: Session, project_id: int, list_name: str, properties: Iterable[str]) -> bytes:
    """Return the CSV devices load for an entity list (implemented by the sync area from its entities).

    Columns: ``name,label,__version,__trunkVersion,__branchId`` then the properties
    (docs/reference/xlsform.md §1.5).
    """
    from server.services import entities

    return entities.entity_list_csv(session, project_id, list_name, list(properties))


def entity_integrity(session: Session, project_id: int, list_name: str, ids: Iterable[str]) -> list[tuple[str, bool]]:
    """Return (entity id, deleted) for the ids a device asks about (implemented by the sync area)."""
    from server.services import entities

    return entities.entity_integrity(session, project_id, list_name, ids)


# ---------------------------------------------------------------------------------------------
# What the OpenRosa routes serve (reads: no transaction of their own).


@dataclass(frozen=True)
class ManifestEntry:
    """One ``<mediaFile>`` of a manifest."""

    name: str
    md5: str
    kind: str

    @property
    def is_entity_list(self) -> bool:
        """Tell whether Collect should treat this file as an entity list."""
        return self.kind == "entity_list"

    @property
    def list_name(self) -> str:
        """Return the entity list name (the file name without ``.csv``)."""
        return self.name.removesuffix(".csv")


@dataclass(frozen=True)
class MediaFile:
    """A form attachment to send: a stored blob, or generated bytes (entity lists)."""

    name: str
    content_type: str
    blob_sha256: str | None = None
    data: bytes | None = None


def form_list(session: Session, project_id: int, xml_form_id: str | None = None) -> list[q.FormListRow]:
    """Return the formList rows: open forms with a published version (one query, no XForm bytes)."""
    return q.formlist_rows(session, project_id, xml_form_id)


def device_and_formlist_stamp(
    session: Session | Connection, token_hash: str, project_id: int
) -> tuple[q.DeviceTokenRow, int] | None:
    """Return a path token's row with the project's formList stamp (one query; ``None`` for an unknown token)."""
    return q.token_and_formlist_stamp(session, token_hash, project_id)


def device_form_list(
    session: Session, token_hash: str, project_id: int, xml_form_id: str | None = None
) -> list[q.FormListRow]:
    """The formList rows of a device token: an app user with assigned forms sees only those."""
    return q.token_formlist_rows(session, token_hash, project_id, xml_form_id)


def require_form_access(session: Session, principal: Principal, project_id: int, xml_form_id: str) -> None:
    """``403 form_not_assigned`` when an app user asks for a form it was not given (its XForm, manifest or
    media); other callers, and forms that do not exist (their own 404 follows), pass."""
    if principal.kind != "device" or principal.form_access != "assigned":
        return
    with transaction(session):
        form = q.get_form(session, project_id, xml_form_id)
        if form is None or q.app_user_has_form(session, principal.id, form.id):
            return
    raise form_not_assigned(xml_form_id)


def form_not_assigned(xml_form_id: str) -> ApiError:
    """The ``403`` a phone gets for a form it was not given (a download or a submission)."""
    return ApiError(
        403,
        "form_not_assigned",
        f"This phone was not given the form {xml_form_id!r}: a manager chooses each phone's forms",
        {"form_id": xml_form_id},
        message_fr=f"Ce téléphone n'a pas reçu le formulaire « {xml_form_id} » : un responsable choisit les "
        "formulaires de chaque téléphone",
    )


def formlist_stamp(session: Session, project_id: int) -> int:
    """Return the project's formList stamp: it moves with every change a formList would show."""
    return q.formlist_stamp(session, project_id)


def served_xform(session: Session, project_id: int, xml_form_id: str) -> tuple[str, bytes]:
    """Return (md5, bytes) of the XForm devices download (404 when unpublished or closed)."""
    found = q.get_current_xform(session, project_id, xml_form_id)
    if found is None:
        raise not_found("form", xml_form_id=xml_form_id)
    return found


def _served_version(session: Session, project_id: int, xml_form_id: str) -> tuple[Form, int]:
    form = q.get_form(session, project_id, xml_form_id)
    if form is None or form.current_version_id is None or form.state == "closed":
        raise not_found("form", xml_form_id=xml_form_id)
    return form, form.current_version_id


def _entity_csv(session: Session, project_id: int, version_id: int, name: str) -> bytes:
    version = q.get_version_by_id(session, version_id)
    assert version is not None
    list_name = name.removesuffix(".csv")
    properties = entity_list_properties(FormSchema.from_json(version.schema_json), list_name)
    return entity_list_csv(session, project_id, list_name, properties)


def manifest_entries(session: Session, project_id: int, xml_form_id: str) -> list[ManifestEntry]:
    """Return the files a device should fetch for the published version: present ones and entity lists."""
    _, version_id = _served_version(session, project_id, xml_form_id)
    entries = []
    for row in q.list_attachments(session, version_id):
        if row.kind == "entity_list":
            data = _entity_csv(session, project_id, version_id, row.name)
            entries.append(ManifestEntry(row.name, hashlib.md5(data, usedforsecurity=False).hexdigest(), row.kind))
        elif row.blob_sha256 is not None and row.md5 is not None:
            entries.append(ManifestEntry(row.name, row.md5, row.kind))
    return entries


def media_file(session: Session, project_id: int, xml_form_id: str, name: str) -> MediaFile:
    """Return an attachment of the published version for download (404 when absent or not uploaded)."""
    _, version_id = _served_version(session, project_id, xml_form_id)
    row = q.get_attachment(session, version_id, name)
    if row is None:
        raise not_found("form attachment", xml_form_id=xml_form_id, name=name)
    if row.kind == "entity_list":
        return MediaFile(name, "text/csv; charset=utf-8", data=_entity_csv(session, project_id, version_id, name))
    if row.blob_sha256 is None:
        raise not_found("form attachment", xml_form_id=xml_form_id, name=name)
    return MediaFile(name, row.content_type or "application/octet-stream", blob_sha256=row.blob_sha256)


def entity_list_integrity(
    session: Session, project_id: int, list_name: str, ids: Iterable[str]
) -> list[tuple[str, bool]]:
    """Return (id, deleted) per asked id for an entity list a published form of the project uses (else 404)."""
    if not q.project_uses_entity_list(session, project_id, f"{list_name}.csv"):
        raise not_found("entity list", list_name=list_name)
    return entity_integrity(session, project_id, list_name, ids)
