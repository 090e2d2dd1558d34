"""Queries over projects, users, memberships and access tokens."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models import AccessToken, AppUserForm, Membership, Project, User
from server.db.models.forms import Form
from server.db.upsert import insert_ignore


def get_user_by_username(session: Session, username: str) -> User | None:
    """Return the user called ``username``."""
    return session.scalars(select(User).where(User.username == username)).one_or_none()


def get_project(session: Session, project_id: int) -> Project | None:
    """Return the project with this id."""
    return session.get(Project, project_id)


def list_projects(session: Session, user_id: int | None = None) -> Sequence[Project]:
    """Return every project, or only those ``user_id`` is a member of."""
    stmt = select(Project).order_by(Project.id)
    if user_id is not None:
        stmt = stmt.join(Membership, Membership.project_id == Project.id).where(Membership.user_id == user_id)
    return session.scalars(stmt).all()


def get_membership_role(session: Session, project_id: int, user_id: int) -> str | None:
    """Return the user's role in the project, if any."""
    return session.scalars(
        select(Membership.role).where(Membership.project_id == project_id, Membership.user_id == user_id)
    ).one_or_none()


def list_memberships(session: Session, project_id: int) -> Sequence[tuple[Membership, User]]:
    """Return the project's members with their users."""
    rows = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == project_id)
        .order_by(User.username)
    ).all()
    return [(m, u) for m, u in rows]


def get_token_by_hash(session: Session, token_hash: str) -> AccessToken | None:
    """Return the access token whose sha256 is ``token_hash``."""
    return session.scalars(select(AccessToken).where(AccessToken.token_hash == token_hash)).one_or_none()


def list_devices(session: Session, project_id: int) -> Sequence[AccessToken]:
    """Return the project's device tokens, newest first."""
    return session.scalars(
        select(AccessToken)
        .where(AccessToken.project_id == project_id, AccessToken.kind == "device")
        .order_by(AccessToken.id.desc())
    ).all()


def list_users(session: Session) -> Sequence[User]:
    """Return every user, oldest first."""
    return session.scalars(select(User).order_by(User.id)).all()


def touch_token(session: Session, token_id: int, now: datetime, older_than: datetime) -> bool:
    """Set a token's ``last_used_at`` to ``now`` unless it is already later than ``older_than``."""
    result = session.execute(
        update(AccessToken)
        .where(
            AccessToken.id == token_id,
            or_(AccessToken.last_used_at.is_(None), AccessToken.last_used_at < older_than),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def actor_names(session: Session, actors: Iterable[str | None]) -> dict[str, str]:
    """Return the name of each ``user:<id>`` (user name) and ``device:<id>`` (device name) among ``actors``."""
    ids: dict[str, set[int]] = {"user": set(), "device": set()}
    for actor in actors:
        kind, _, raw = (actor or "").partition(":")
        if kind in ids and raw.isdigit():
            ids[kind].add(int(raw))
    names: dict[str, str] = {}
    if ids["user"]:
        for user_id, username in session.execute(select(User.id, User.username).where(User.id.in_(ids["user"]))):
            names[f"user:{user_id}"] = username
    if ids["device"]:
        rows = session.execute(
            select(AccessToken.id, AccessToken.name).where(
                AccessToken.id.in_(ids["device"]), AccessToken.kind == "device"
            )
        )
        for token_id, name in rows:
            names[f"device:{token_id}"] = name
    return names


def get_user_by_email(session: Session, email: str) -> User | None:
    """Return the user whose email is ``email``."""
    return session.scalars(select(User).where(User.email == email)).one_or_none()


def delete_membership(session: Session, project_id: int, user_id: int) -> None:
    """Delete a user's role in a project."""
    session.execute(delete(Membership).where(Membership.project_id == project_id, Membership.user_id == user_id))


def list_app_user_forms(session: Session, project_id: int) -> Sequence[tuple[int, int, str]]:
    """(token id, form id, XForm id) of every form assigned to a live app user of the project."""
    rows = session.execute(
        select(AppUserForm.token_id, AppUserForm.form_id, Form.xml_form_id)
        .join(AccessToken, AccessToken.id == AppUserForm.token_id)
        .join(Form, Form.id == AppUserForm.form_id)
        .where(AccessToken.project_id == project_id, AccessToken.revoked_at.is_(None))
        .order_by(AppUserForm.token_id, Form.xml_form_id)
    )
    return [(row[0], row[1], row[2]) for row in rows]


def form_id_of(session: Session, project_id: int, xml_form_id: str) -> int | None:
    """The id of the project's form ``xml_form_id``."""
    found: int | None = session.scalars(
        select(Form.id).where(Form.project_id == project_id, Form.xml_form_id == xml_form_id)
    ).one_or_none()
    return found


def add_app_user_form(session: Session, token_id: int, form_id: int) -> None:
    """Assign a form to an app user (nothing when it already is: ``ON CONFLICT DO NOTHING``)."""
    values = {"token_id": token_id, "form_id": form_id, "created_at": utcnow()}
    insert_ignore(session, AppUserForm.__table__, values, ("token_id", "form_id"))  # type: ignore[arg-type]


def remove_app_user_form(session: Session, token_id: int, form_id: int) -> bool:
    """Take a form away from an app user; ``True`` when it was assigned."""
    result = session.execute(
        delete(AppUserForm).where(AppUserForm.token_id == token_id, AppUserForm.form_id == form_id)
    )
    return bool(getattr(result, "rowcount", 0))


def copy_app_user_forms(session: Session, from_token_id: int, to_token_id: int) -> None:
    """Give a reissued app user the forms its old token had."""
    form_ids = session.scalars(select(AppUserForm.form_id).where(AppUserForm.token_id == from_token_id)).all()
    for form_id in form_ids:
        add_app_user_form(session, to_token_id, form_id)
