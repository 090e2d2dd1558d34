"""Accounts use cases: users, projects, memberships, device tokens and API sessions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models import AccessToken, Membership, Project, User
from server.db.queries import accounts as q
from server.db.queries import audit
from server.db.queries import forms as forms_q
from server.db.transaction import transaction
from server.errors import ApiError, conflict, not_found
from server.passwords import digest_ha1, hash_password, new_token, token_hash
from server.services.password_policy import check_new_password

SESSION_LIFETIME = timedelta(hours=24)
# A token's ``last_used_at`` is written at most once per this interval: a phone sending 50 forms
# in a minute costs one UPDATE, not 50.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class AppUserAccess:
    """One form an app user may see."""

    token_id: int
    form_id: int
    xml_form_id: str


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token: the secret is shown once, only its hash is stored."""

    id: int
    token: str
    name: str
    project_id: int | None
    expires_at: datetime | None
    project_name: str | None = None  # devices: the name Collect shows for the project set up by the QR code

    def collect_url(self, base_url: str) -> str:
        """Return the server URL ODK Collect is given for this device token (``base_url``: the public URL)."""
        return f"{base_url.rstrip('/')}/v1/key/{self.token}/projects/{self.project_id}"


def create_user(
    session: Session,
    username: str,
    password: str,
    *,
    is_admin: bool = False,
    actor: str = "system",
    email: str | None = None,
    display_name: str | None = None,
) -> User:
    """Create a user; ``400 weak_password`` for a password NIST would refuse, ``409`` when the name is taken."""
    check_new_password(password, username)
    with transaction(session):
        user = User(
            username=username,
            password_hash=hash_password(password),
            digest_ha1=digest_ha1(username, password),
            is_admin=is_admin,
            email=email,
            display_name=display_name,
        )
        session.add(user)
        try:
            session.flush()
        except IntegrityError:
            taken = f"A user called {username!r}" + (f" or with the email {email!r}" if email else "")
            raise conflict("username_taken", f"{taken} already exists") from None
        audit.record(session, actor, "user.create", subject=f"user:{user.id}", details={"username": username})
    return user


def set_password(session: Session, username: str, password: str, actor: str = "system") -> None:
    """Replace a user's password (the same rules as for a new user)."""
    with transaction(session):
        user = q.get_user_by_username(session, username)
        if user is None:
            raise not_found("user", username=username)
        check_new_password(password, username)
        user.password_hash = hash_password(password)
        user.digest_ha1 = digest_ha1(username, password)
        audit.record(session, actor, "user.password", subject=f"user:{user.id}")


def list_users(session: Session) -> Sequence[User]:
    """Every user, oldest first."""
    with transaction(session):
        return q.list_users(session)


def set_user_disabled(session: Session, username: str, disabled: bool, actor: str = "system") -> User:
    """Disable (or enable again) a user: a disabled user's password and API sessions stop working at once."""
    with transaction(session):
        user = q.get_user_by_username(session, username)
        if user is None:
            raise not_found("user", username=username)
        if user.disabled != disabled:
            user.disabled = disabled
            action = "user.disable" if disabled else "user.enable"
            audit.record(session, actor, action, subject=f"user:{user.id}", details={"username": username})
    return user


def create_project(session: Session, name: str, actor: str = "system") -> Project:
    """Create a project; ``409`` when the name is taken."""
    with transaction(session):
        project = Project(name=name)
        session.add(project)
        try:
            session.flush()
        except IntegrityError:
            raise conflict("project_name_taken", f"A project called {name!r} already exists") from None
        audit.record(session, actor, "project.create", project.id, f"project:{project.id}", {"name": name})
    return project


def set_membership(session: Session, project_id: int, username: str, role: str, actor: str = "system") -> Membership:
    """Give ``username`` the ``role`` in the project (replacing an earlier role)."""
    with transaction(session):
        if q.get_project(session, project_id) is None:
            raise not_found("project", project_id=project_id)
        user = q.get_user_by_username(session, username)
        if user is None:
            raise not_found("user", username=username)
        return _set_membership(session, project_id, user, role, actor)


def _set_membership(session: Session, project_id: int, user: User, role: str, actor: str) -> Membership:
    existing = [m for m, u in q.list_memberships(session, project_id) if u.id == user.id]
    if existing:
        membership = existing[0]
        membership.role = role
    else:
        membership = Membership(project_id=project_id, user_id=user.id, role=role)
        session.add(membership)
    session.flush()
    audit.record(session, actor, "membership.set", project_id, f"user:{user.id}", {"role": role})
    return membership


def create_device(
    session: Session,
    project_id: int,
    name: str,
    *,
    expires_at: datetime | None = None,
    actor: str = "system",
    secret: str | None = None,
    form_access: str = "all",
) -> IssuedToken:
    """Issue a device token for a phone (role coach in the project).

    ``secret`` is for the demo only, whose token is derived from the server's secret key so that
    its URL survives a reload; every other token is random. ``form_access="assigned"``: an app user
    that sees only the forms assigned to it.
    """
    with transaction(session):
        project = q.get_project(session, project_id)
        if project is None:
            raise not_found("project", project_id=project_id)
        issued = _issue_device(session, project, name, expires_at, secret or new_token(), form_access)
        audit.record(session, actor, "device.create", project_id, f"device:{issued.id}", {"name": name})
    return issued


def ensure_device(session: Session, project_id: int, name: str, secret: str, actor: str = "system") -> IssuedToken:
    """Return the device whose token is ``secret``, issuing it the first time (the demo's stable device).

    ``409 device_revoked`` when that token was revoked or has expired (it cannot be revived: a
    revoked token stays revoked), ``409 token_taken`` when it is not a device of this project.
    """
    with transaction(session):
        project = q.get_project(session, project_id)
        if project is None:
            raise not_found("project", project_id=project_id)
        existing = q.get_token_by_hash(session, token_hash(secret))
        if existing is None:
            issued = _issue_device(session, project, name, None, secret)
            audit.record(session, actor, "device.create", project_id, f"device:{issued.id}", {"name": name})
            return issued
        if existing.kind != "device" or existing.project_id != project_id:
            raise conflict("token_taken", "This token belongs to another device or project")
        if existing.revoked_at is not None or (existing.expires_at is not None and existing.expires_at <= utcnow()):
            raise conflict(
                "device_revoked",
                f"Device {existing.id} ({existing.name}) was revoked or has expired: "
                f"list the project's devices (fieldsync devices list --project {project_id}) to find its successor",
                device_id=existing.id,
            )
        return IssuedToken(existing.id, secret, existing.name, project_id, existing.expires_at, project.name)


def _issue_device(
    session: Session, project: Project, name: str, expires_at: datetime | None, secret: str, form_access: str = "all"
) -> IssuedToken:
    # sha256, not argon2: the secret is 256 random bits, so a fast hash cannot be brute-forced and
    # every request finds its token by one indexed equality.
    token = AccessToken(
        token_hash=token_hash(secret),
        kind="device",
        name=name,
        project_id=project.id,
        role="coach",
        expires_at=expires_at,
        form_access=form_access,
    )
    session.add(token)
    session.flush()
    return IssuedToken(token.id, secret, name, project.id, expires_at, project.name)


def list_devices(session: Session, project_id: int) -> Sequence[AccessToken]:
    """The project's device tokens, newest first (``404`` for an unknown project); secrets are never shown."""
    with transaction(session):
        if q.get_project(session, project_id) is None:
            raise not_found("project", project_id=project_id)
        return q.list_devices(session, project_id)


def reissue_device(session: Session, project_id: int, device_id: int, actor: str = "system") -> IssuedToken:
    """Replace a device's token: the old one is revoked and a new one issued with the same name.

    For a lost phone or a lost Collect URL: the old secret cannot be shown again (only its hash is
    stored), so the way back is a new secret. A future expiry is kept; a past one is dropped.
    """
    with transaction(session):
        old = session.get(AccessToken, device_id, with_for_update=True)
        project = q.get_project(session, project_id)
        if old is None or old.kind != "device" or old.project_id != project_id or project is None:
            raise not_found("device", device_id=device_id)
        now = utcnow()
        if old.revoked_at is None:
            old.revoked_at = now
        expires_at = old.expires_at if old.expires_at is not None and old.expires_at > now else None
        issued = _issue_device(session, project, old.name, expires_at, new_token(), old.form_access)
        q.copy_app_user_forms(session, old.id, issued.id)
        audit.record(
            session, actor, "device.reissue", project_id, f"device:{issued.id}", {"name": old.name, "replaces": old.id}
        )
    return issued


def note_token_use(session: Session, token_id: int) -> bool:
    """Record that a token was just used; at most one write per ``LAST_USED_RESOLUTION``.

    A compare-and-set in its own short transaction: concurrent requests with the same token write
    once between them, and nothing waits on a row lock held by a request. ``True`` when it wrote.
    """
    now = utcnow()
    with transaction(session):
        return q.touch_token(session, token_id, now, now - LAST_USED_RESOLUTION)


def revoke_device(session: Session, project_id: int, device_id: int, actor: str = "system") -> AccessToken:
    """Revoke a device token; revoking twice is harmless."""
    with transaction(session):
        token = session.get(AccessToken, device_id)
        if token is None or token.kind != "device" or token.project_id != project_id:
            raise not_found("device", device_id=device_id)
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            audit.record(session, actor, "device.revoke", project_id, f"device:{token.id}")
    return token


def create_session_token(session: Session, user: User) -> IssuedToken:
    """Issue a 24-hour API bearer token for a user who proved their password."""
    with transaction(session):
        secret = new_token()
        expires = utcnow() + SESSION_LIFETIME
        token = AccessToken(
            token_hash=token_hash(secret),
            kind="session",
            name=f"session for {user.username}",
            user_id=user.id,
            expires_at=expires,
        )
        session.add(token)
        session.flush()
        audit.record(session, f"user:{user.id}", "session.create", subject=f"user:{user.id}")
    return IssuedToken(token.id, secret, token.name, None, expires)


def login_name(session: Session, email: str) -> str:
    """The username that signs in as ``email`` (Central logs in by email; a username is accepted too)."""
    user = q.get_user_by_email(session, email)
    return user.username if user is not None else email


def end_session(session: Session, secret: str, user_id: int, *, is_admin: bool = False) -> None:
    """Revoke the API session whose token is ``secret`` (one's own, or anyone's for an admin); ``404`` otherwise."""
    with transaction(session):
        token = q.get_token_by_hash(session, token_hash(secret))
        if token is None or token.kind != "session" or not (is_admin or token.user_id == user_id):
            raise not_found("session")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            audit.record(session, f"user:{user_id}", "session.end", subject=f"user:{token.user_id}")


def assign_role(session: Session, project_id: int, user_id: int, role: str, actor: str = "system") -> Membership:
    """Give the user with ``user_id`` the ``role`` in the project (Central's role assignment)."""
    with transaction(session):
        if q.get_project(session, project_id) is None:
            raise not_found("project", project_id=project_id)
        user = session.get(User, user_id)
        if user is None:
            raise not_found("user", user_id=user_id)
        return _set_membership(session, project_id, user, role, actor)


def unassign_role(session: Session, project_id: int, user_id: int, role: str, actor: str = "system") -> None:
    """Take ``role`` in the project away from the user; ``404`` when they do not hold it."""
    with transaction(session):
        if q.get_membership_role(session, project_id, user_id) != role:
            raise not_found("assignment", project_id=project_id, user_id=user_id, role=role)
        q.delete_membership(session, project_id, user_id)
        audit.record(session, actor, "membership.remove", project_id, f"user:{user_id}", {"role": role})


def create_app_user(session: Session, project_id: int, display_name: str, actor: str = "system") -> IssuedToken:
    """Issue an app user (a device token that sees only the forms assigned to it, none at first)."""
    return create_device(session, project_id, display_name, actor=actor, form_access="assigned")


def list_app_user_forms(session: Session, project_id: int, xml_form_id: str | None = None) -> Sequence[AppUserAccess]:
    """The project's app users' form assignments (of one form when ``xml_form_id`` is given)."""
    with transaction(session):
        if xml_form_id is not None:
            _form_of(session, project_id, xml_form_id)
        return [
            AppUserAccess(token_id, form_id, form_xml_id)
            for token_id, form_id, form_xml_id in q.list_app_user_forms(session, project_id)
            if xml_form_id is None or form_xml_id == xml_form_id
        ]


def set_app_user_form(
    session: Session, project_id: int, xml_form_id: str, token_id: int, assigned: bool, actor: str = "system"
) -> None:
    """Assign a form to an app user of the project (or take it away); assigning twice is harmless.

    ``404`` when the form or the app user (a live device of this project) is unknown, or (taking
    away) when the form was not assigned to it.
    """
    with transaction(session):
        form_id = _form_of(session, project_id, xml_form_id)
        token = _live_device(session, project_id, token_id)
        if assigned:
            _assign(session, project_id, token, form_id, xml_form_id, actor)
        elif not _unassign(session, project_id, token, form_id, xml_form_id, actor):
            raise not_found("assignment", app_user_id=token_id, xml_form_id=xml_form_id)
        forms_q.touch_formlist_stamp(session, project_id)  # the app user's cached formList is out of date


def _assign(session: Session, project_id: int, token: AccessToken, form_id: int, xml_form_id: str, actor: str) -> None:
    """Give the app user the form (it then sees only its assigned forms), audited."""
    q.add_app_user_form(session, token.id, form_id)
    token.form_access = "assigned"
    details = {"xml_form_id": xml_form_id}
    audit.record(session, actor, "app_user.form_assign", project_id, f"device:{token.id}", details)


def _unassign(
    session: Session, project_id: int, token: AccessToken, form_id: int, xml_form_id: str, actor: str
) -> bool:
    """Take the form away from the app user, audited; ``False`` when it was not assigned."""
    if not q.remove_app_user_form(session, token.id, form_id):
        return False
    details = {"xml_form_id": xml_form_id}
    audit.record(session, actor, "app_user.form_unassign", project_id, f"device:{token.id}", details)
    return True


@dataclass(frozen=True)
class PhoneForms:
    """What one phone sees: every open form (``all``), or its assigned forms (``assigned``)."""

    device_id: int
    name: str
    form_access: str
    assigned: frozenset[str]


def phone_forms(session: Session, project_id: int, device_id: int) -> PhoneForms:
    """The forms a live phone (device token) of the project sees; ``404`` for any other token."""
    with transaction(session):
        token = _live_device(session, project_id, device_id)
        assigned = frozenset(x for t, _, x in q.list_app_user_forms(session, project_id) if t == device_id)
        return PhoneForms(token.id, token.name, token.form_access, assigned)


def set_phone_forms(
    session: Session, project_id: int, device_id: int, xml_form_ids: set[str], actor: str = "system"
) -> PhoneForms:
    """Make the phone see exactly ``xml_form_ids`` (one transaction of the API's assign and unassign steps)."""
    with transaction(session):
        token = _live_device(session, project_id, device_id)
        wanted = {xml_form_id: _form_of(session, project_id, xml_form_id) for xml_form_id in sorted(xml_form_ids)}
        held = {x: f for t, f, x in q.list_app_user_forms(session, project_id) if t == device_id}
        for xml_form_id, form_id in wanted.items():
            if xml_form_id not in held:
                _assign(session, project_id, token, form_id, xml_form_id, actor)
        for xml_form_id, form_id in held.items():
            if xml_form_id not in wanted:
                _unassign(session, project_id, token, form_id, xml_form_id, actor)
        token.form_access = "assigned"  # even with no form ticked: the phone then sees none
        forms_q.touch_formlist_stamp(session, project_id)  # the phone's cached formList is out of date
        return PhoneForms(token.id, token.name, token.form_access, frozenset(wanted))


def _live_device(session: Session, project_id: int, device_id: int) -> AccessToken:
    token = session.get(AccessToken, device_id)
    if token is None or token.kind != "device" or token.project_id != project_id or token.revoked_at:
        raise not_found("app user", app_user_id=device_id)
    return token


def _form_of(session: Session, project_id: int, xml_form_id: str) -> int:
    form_id = q.form_id_of(session, project_id, xml_form_id)
    if form_id is None:
        raise not_found("form", xml_form_id=xml_form_id)
    return form_id


def require_role_name(role: str) -> str:
    """Validate a project role name."""
    if role not in ("manager", "coach", "analyst"):
        raise ApiError(
            400, "invalid_input", f"Unknown role {role!r}", {"fields": {"role": ["Must be manager, coach or analyst."]}}
        )
    return role
