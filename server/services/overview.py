"""What the console's lists show, read from the same tables the JSON API serves: forms with their counts,
devices with their last use, entity lists with their sizes, audit events with names instead of ids.

Read-only: nothing here opens a transaction or decides anything; the use cases stay in their services.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from server.db.models import AccessToken, AuditEvent, Membership, Project, User
from server.db.queries import accounts as accounts_q
from server.db.queries import audit
from server.db.queries import overview as q
from server.errors import not_found
from server.services import forms as forms_svc

AUDIT_PAGE_SIZE = 50


@dataclass(frozen=True)
class FormRow:
    """A form in the forms list, with what arrived for it."""

    form: forms_svc.FormDetail
    submissions: int
    last_received: datetime | None
    awaiting_review: int
    quarantined: int


@dataclass(frozen=True)
class EntityListRow:
    """An entity list with its properties and how many live entities it holds."""

    name: str
    properties: tuple[str, ...]
    size: int


@dataclass(frozen=True)
class AuditRow:
    """An audit event with the actor's and the subject's names."""

    event: AuditEvent
    actor_name: str
    subject_name: str


@dataclass(frozen=True)
class AuditPage:
    """One page of audit events, newest first, and the id to continue before (``None``: last page)."""

    rows: tuple[AuditRow, ...]
    next_before_id: int | None


def get_project(session: Session, project_id: int) -> Project:
    """Return a project (404 when unknown)."""
    project = accounts_q.get_project(session, project_id)
    if project is None:
        raise not_found("project", project_id=project_id)
    return project


def visible_projects(session: Session, user_id: int, is_admin: bool) -> Sequence[Project]:
    """Return the projects a user sees (every project for an admin)."""
    return accounts_q.list_projects(session, None if is_admin else user_id)


def form_rows(session: Session, project_id: int) -> list[FormRow]:
    """Return the project's forms with submissions, newest arrival, awaiting review and quarantined counts."""
    counts = q.submission_counts(session, project_id)
    held = Counter(
        str(raw.get("form_id")) for raw in q.open_held_submissions(session, project_id) if isinstance(raw, dict)
    )
    rows = []
    for form in forms_svc.list_form_details(session, project_id):
        total, newest, awaiting = counts.get(form.id, (0, None, 0))
        rows.append(FormRow(form, total, newest, awaiting, held.get(form.xml_form_id, 0)))
    return rows


def members(session: Session, project_id: int) -> Sequence[tuple[Membership, User]]:
    """Return the project's members with their users, by username."""
    return accounts_q.list_memberships(session, project_id)


def devices(session: Session, project_id: int) -> Sequence[AccessToken]:
    """Return the project's phones, newest first, with their last use and revocation."""
    return accounts_q.list_devices(session, project_id)


def entity_lists(session: Session, project_id: int) -> list[EntityListRow]:
    """Return the project's entity lists with their properties and sizes."""
    return [
        EntityListRow(entity_list.name, tuple(entity_list.properties or ()), size)
        for entity_list, size in q.entity_list_sizes(session, project_id)
    ]


def _names(session: Session, refs: set[str]) -> dict[str, str]:
    """Resolve ``user:<id>``, ``device:<id>``, ``project:<id>`` and ``form:<id>`` references to names."""
    ids: dict[str, set[int]] = {"user": set(), "device": set(), "project": set()}
    names: dict[str, str] = {}
    for ref in refs:
        kind, _, raw_id = ref.partition(":")
        if kind in ids and raw_id.isdigit():
            ids[kind].add(int(raw_id))
        elif kind == "form" and raw_id:
            names[ref] = raw_id
    names.update({f"user:{k}": v for k, v in q.usernames(session, ids["user"]).items()})
    names.update({f"device:{k}": v for k, v in q.device_names(session, ids["device"]).items()})
    names.update({f"project:{k}": v for k, v in q.project_names(session, ids["project"]).items()})
    return names


def names_of(session: Session, refs: set[str]) -> dict[str, str]:
    """Return {``user:<id>`` / ``device:<id>``: name} for audit actors and ``created_by`` fields."""
    return _names(session, refs)


def form_languages(session: Session, project_id: int, xml_form_id: str) -> tuple[str, ...]:
    """Return the languages the form's shown version is written in (``French (fr)``, ``Arabic (ar)`` ...)."""
    schema = forms_svc.form_schema(session, project_id, xml_form_id)
    return tuple(str(language) for language in schema.get("languages") or ())


RTL_LANGUAGES = ("ar", "fa", "he", "ur")


def form_direction(session: Session, project_id: int, xml_form_id: str, version: str) -> tuple[str, str]:
    """Return (language code, ``ltr``/``rtl``) of a version's default language, for its preview."""
    schema = forms_svc.form_schema(session, project_id, xml_form_id, version)
    languages = [str(language) for language in schema.get("languages") or ()]
    language = str(schema.get("default_language") or (languages[0] if languages else "") or "")
    code = language.rsplit("(", 1)[-1].rstrip(")").split("-")[0].strip().lower() if language else ""
    return code, "rtl" if code in RTL_LANGUAGES else "ltr"


def audit_page(session: Session, project_id: int | None, action: str | None, before_id: int | None) -> AuditPage:
    """Return a page of audit events (newest first, optionally of one project and one action) with names."""
    events = audit.list_events(session, project_id, action, AUDIT_PAGE_SIZE + 1, before_id)
    shown = events[:AUDIT_PAGE_SIZE]
    names = _names(session, {e.actor for e in shown} | {e.subject for e in shown if e.subject})
    rows = tuple(AuditRow(e, names.get(e.actor, e.actor), names.get(e.subject or "", e.subject or "")) for e in shown)
    more = len(events) > AUDIT_PAGE_SIZE
    return AuditPage(rows, shown[-1].id if more and shown else None)
