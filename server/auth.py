"""Who is calling and what they may do: HTTP Basic, bearer tokens, device tokens in the path, roles.

Roles: ``admin`` (a user flag: everything), and per project ``manager`` (forms and people),
``coach`` (download forms, submit, sync) and ``analyst`` (read and export). A device token acts
as a coach of its one project. A missing or wrong credential is ``401``; a right one without the
permission is ``403``. The JSON API's ``401`` sends no ``WWW-Authenticate: Basic`` challenge, so a browser
never prompts for (and then caches and replays) Basic credentials; OpenRosa routes send their own
Digest/Basic challenges (``server.openrosa.auth``), which ODK Collect needs.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from flask import Response, after_this_request, g, request

from server.db.base import utcnow
from server.db.models import AccessToken, User
from server.db.queries import accounts as q
from server.db.queries import relays as relays_q
from server.errors import ApiError, forbidden, unauthenticated
from server.passwords import token_hash
from server.services.accounts import LAST_USED_RESOLUTION, note_token_use
from server.store import after_session_close, db_session, get_store

PERMISSIONS: dict[str, frozenset[str]] = {
    "manager": frozenset(
        {
            "project.read",
            "form.read",
            "form.write",
            "submission.read",
            "submission.create",
            "submission.review",
            "submission.delete",
            "export",
            "export.preset",
            "export.schedule",
            "people.manage",
            "entity.read",
            "entity.resolve",
            "quarantine.manage",
            "sync.push",
            "sync.pull",
            "audit.read",
            "webhook.manage",
            "indicator.read",
            "indicator.manage",
        }
    ),
    "coach": frozenset({"project.read", "form.read", "submission.create", "sync.push", "sync.pull", "entity.read"}),
    "analyst": frozenset({"project.read", "form.read", "submission.read", "export", "entity.read", "indicator.read"}),
}

# An office relay (``fieldsync relays issue``) in each project it was issued for: it reads forms and entity
# lists, pushes what the office's phones sent and pulls changes. Kept apart from the people's roles above,
# which error messages list as the roles a person can be given.
RELAY_PERMISSIONS = frozenset(
    {"project.read", "form.read", "submission.create", "sync.push", "sync.pull", "entity.read"}
)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (maybe admin), a device bound to one project, or an office relay."""

    kind: str  # "user" | "device" | "relay"
    id: int
    name: str
    is_admin: bool = False
    project_id: int | None = None  # devices only
    role: str | None = None  # devices only
    form_access: str = "all"  # devices only: "assigned" for an app user given some forms
    project_ids: tuple[int, ...] = ()  # relays only: the projects it was issued for

    @property
    def actor(self) -> str:
        """Return the audit-log name of this caller."""
        return f"{self.kind}:{self.id}"

    def role_in(self, project_id: int) -> str | None:
        """Return this caller's role in a project (``admin`` for admins)."""
        if self.is_admin:
            return "admin"
        if self.kind == "device":
            return self.role if self.project_id == project_id else None
        if self.kind == "relay":
            return "relay" if project_id in self.project_ids else None
        return q.get_membership_role(db_session(), project_id, self.id)

    def can(self, permission: str, project_id: int | None) -> bool:
        """Tell whether this caller holds ``permission`` (in ``project_id`` when given)."""
        if self.is_admin:
            return True
        if project_id is None:
            return False
        role = self.role_in(project_id)
        if role == "relay":
            return permission in RELAY_PERMISSIONS
        return role is not None and permission in PERMISSIONS.get(role, frozenset())


def principal_from_token(token: str) -> Principal | None:
    """Resolve a bearer or path token to a principal; ``None`` when unknown, revoked or expired."""
    row = q.get_token_by_hash(db_session(), token_hash(token))
    if row is None:
        return relay_principal(token)
    if not token_is_live(row):
        return None
    note_use(row.id, row.last_used_at)
    return _principal_of_token(row)


def use_is_recent(last_used_at: datetime | None) -> bool:
    """Whether a token's ``last_used_at`` is recent enough that using it now writes nothing."""
    return last_used_at is not None and utcnow() - last_used_at < LAST_USED_RESOLUTION


def note_use(token_id: int, last_used_at: datetime | None) -> None:
    """Refresh a token's ``last_used_at`` after this request succeeds, if the value read is a minute old.

    Costs nothing on the hot paths when the value read with the token is recent (the usual case);
    otherwise one compare-and-set UPDATE in its own transaction once the request's session is
    closed, so it neither holds the request's locks longer nor waits behind them. A refused
    request (4xx, 5xx) leaves the store as it was.
    """
    if use_is_recent(last_used_at):
        return
    pending: set[int] = g.setdefault("used_token_ids", set())
    if not pending:
        after_this_request(_after_success)
    pending.add(token_id)


def _after_success(response: Response) -> Response:
    if response.status_code < 400:
        after_session_close(_write_token_use)
    return response


def _write_token_use() -> None:
    session = get_store().sessions()
    try:
        for token_id in sorted(g.pop("used_token_ids", ())):
            note_token_use(session, token_id)
    finally:
        session.close()


class _TokenState(Protocol):
    """What both an ``AccessToken`` and a lean token row offer (read-only)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def project_id(self) -> int | None: ...
    @property
    def role(self) -> str | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def form_access(self) -> str: ...


def token_is_live(row: _TokenState) -> bool:
    """Tell whether an access token (ORM object or lean row) is neither revoked nor expired."""
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > utcnow())


def device_principal(row: _TokenState) -> Principal:
    """The principal of a device token (ORM object or lean row)."""
    return Principal("device", row.id, row.name, project_id=row.project_id, role=row.role, form_access=row.form_access)


def relay_principal(token: str) -> Principal | None:
    """The principal of an office relay's token; ``None`` when unknown or revoked."""
    session = db_session()
    relay = relays_q.get_relay_by_hash(session, token_hash(token))
    if relay is None or relay.revoked_at is not None:
        return None
    if relay.last_used_at is None or utcnow() - relay.last_used_at >= LAST_USED_RESOLUTION:
        relay_id = relay.id
        after_session_close(lambda: _write_relay_use(relay_id))
    return Principal("relay", relay.id, relay.name, project_ids=relays_q.relay_project_ids(session, relay.id))


def _write_relay_use(relay_id: int) -> None:
    from server.services.relays import note_relay_use

    session = get_store().sessions()
    try:
        note_relay_use(session, relay_id)
    finally:
        session.close()


def _principal_of_token(row: AccessToken) -> Principal | None:
    if row.kind == "device":
        return device_principal(row)
    if row.user_id is None:
        return None
    user = db_session().get(User, row.user_id)
    if user is None or user.disabled:
        return None
    return Principal("user", user.id, user.username, is_admin=user.is_admin)


def principal_from_password(username: str, password: str, scheme: str = "basic") -> Principal | None:
    """Check a username and password; ``None`` when they do not match an enabled user.

    Throttled, timed alike for unknown users and audited on failure (``server.services.logins``);
    ``429`` while this account or address must pause.
    """
    from server.services.logins import password_login

    user = password_login(db_session(), username, password, address=request.remote_addr or "-", scheme=scheme)
    if user is None:
        return None
    return Principal("user", user.id, user.username, is_admin=user.is_admin)


def current_principal() -> Principal | None:
    """Authenticate this request from its ``Authorization`` header (cached per request)."""
    if "principal" in g:
        cached: Principal | None = g.principal
        return cached
    principal: Principal | None = None
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        principal = principal_from_token(value.strip())
        if principal is None:
            raise unauthenticated("The bearer token is unknown, revoked or expired")
    elif scheme.lower() == "basic" and value:
        try:
            username, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthenticated("Malformed Basic credentials") from None
        principal = principal_from_password(username, password)
        if principal is None:
            raise unauthenticated("Wrong username or password")
    g.principal = principal
    return principal


def require(permission: str, project_id: int | None = None) -> Principal:
    """Return the caller if they hold ``permission``; else raise ``401`` (no credential) or ``403``."""
    principal = current_principal()
    if principal is None:
        raise unauthenticated()
    if not principal.can(permission, project_id):
        raise permission_denied(principal, permission, project_id)
    return principal


def roles_with(permission: str) -> list[str]:
    """Return the project roles that hold ``permission``, most powerful first (admins hold every one)."""
    return [role for role, granted in PERMISSIONS.items() if permission in granted]


def permission_denied(principal: Principal, permission: str, project_id: int | None, action: str = "This") -> ApiError:
    """A ``403`` naming the missing permission, the caller's role, the roles that have it, and what to do."""
    holders = roles_with(permission)
    wanted = _listed(holders, "or")
    role = principal.role_in(project_id) if project_id is not None else None
    if project_id is None:
        advice = "only an admin holds it outside a project"
    elif principal.kind == "device":
        advice = f"a device key acts as a coach of its project: sign in as a person with {wanted}"
    elif principal.kind == "relay":
        advice = "an office relay may only push and pull in the projects it was issued for"
    elif role is None:
        advice = f"you have no role in project {project_id}: ask one of its managers to give you one"
    else:
        advice = f"your role in project {project_id} is {role}: ask one of its managers for {wanted}"
    return ApiError(
        403,
        "forbidden",
        f"{action} needs the {permission!r} permission, held by {_listed(holders, 'and')}; {advice}",
        {"permission": permission, "project_id": project_id, "role": role, "roles_with_permission": holders},
    )


def _listed(roles: list[str], conjunction: str) -> str:
    if not roles:
        return "only admins"
    words = roles[0] if len(roles) == 1 else f"{', '.join(roles[:-1])} {conjunction} {roles[-1]}"
    return f"the role{'s' if len(roles) > 1 and conjunction == 'and' else ''} {words}"


def require_admin(hint: str | None = None) -> Principal:
    """Return the caller if they are an admin; else ``401``/``403`` (``hint``: what a non-admin can do instead)."""
    principal = current_principal()
    if principal is None:
        raise unauthenticated()
    if not principal.is_admin:
        raise forbidden(f"Only an admin can do this: {hint}" if hint else "Only an admin can do this")
    return principal


def require_user() -> Principal:
    """Return the caller if it is an authenticated person (not a device)."""
    principal = current_principal()
    if principal is None:
        raise unauthenticated()
    if principal.kind != "user":
        raise forbidden("Devices cannot do this")
    return principal
