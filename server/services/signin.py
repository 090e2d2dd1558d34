"""Console sign-in: check a password, recognise a signed-in user, change a password, keep a language choice.

A console session cookie holds the user's id and a fingerprint of their password hash: changing the
password changes the fingerprint, so every other browser signed in with the old one is signed out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.orm import Session

from server.db.models import User
from server.db.queries import audit
from server.db.transaction import transaction
from server.errors import ApiError, not_found
from server.passwords import digest_ha1, hash_password, verify_password

MIN_PASSWORD_LENGTH = 8  # the JSON API's rule for new users (server/api/schemas.py UserIn)
LOCALES = ("fr", "ar", "en")


@dataclass(frozen=True)
class SignedIn:
    """Who is signed in to the console, and the fingerprint their session cookie must carry."""

    user_id: int
    username: str
    is_admin: bool
    locale: str | None
    fingerprint: str


def _fingerprint(user: User) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:24]


def _signed_in(user: User) -> SignedIn:
    return SignedIn(user.id, user.username, user.is_admin, user.locale, _fingerprint(user))


def sign_in(session: Session, username: str, password: str, address: str = "-") -> SignedIn | None:
    """Check a username and password (``None`` when they do not match an enabled user); audited.

    The same throttled, audited check as the API's (``server.services.logins``): ``429`` while this
    account or address must pause, a failure counted and audited.
    """
    from server.services.logins import password_login

    user = password_login(session, username, password, address=address, scheme="console")
    if user is None:
        return None
    with transaction(session):
        audit.record(session, f"user:{user.id}", "user.sign_in", subject=f"user:{user.id}")
        return _signed_in(user)


def signed_in_user(session: Session, user_id: int, fingerprint: str) -> SignedIn | None:
    """Return the user a session cookie names, unless disabled or their password changed since."""
    user = session.get(User, user_id)
    if user is None or user.disabled or _fingerprint(user) != fingerprint:
        return None
    return _signed_in(user)


def change_password(session: Session, user_id: int, current: str, new: str) -> SignedIn:
    """Replace the caller's password after checking the current one; field errors as ``400``."""
    errors: dict[str, list[str]] = {}
    if len(new) < MIN_PASSWORD_LENGTH:
        errors["new_password"] = [f"The new password needs at least {MIN_PASSWORD_LENGTH} characters."]
    with transaction(session):
        user = session.get(User, user_id)
        if user is None:
            raise not_found("user", user_id=user_id)
        if not verify_password(user.password_hash, current):
            errors["current_password"] = ["This is not your current password."]
        if errors:
            raise ApiError(400, "invalid_input", "The password was not changed", {"fields": errors})
        user.password_hash = hash_password(new)
        user.digest_ha1 = digest_ha1(user.username, new)
        audit.record(session, f"user:{user.id}", "user.password", subject=f"user:{user.id}")
        session.flush()
        return _signed_in(user)


def set_locale(session: Session, user_id: int, locale: str) -> None:
    """Store the language a user reads the console in (``fr``, ``ar`` or ``en``)."""
    if locale not in LOCALES:
        raise ApiError(
            400, "invalid_input", f"Unknown language {locale!r}", {"fields": {"locale": ["Must be fr, ar or en."]}}
        )
    with transaction(session):
        user = session.get(User, user_id)
        if user is None:
            raise not_found("user", user_id=user_id)
        user.locale = locale
