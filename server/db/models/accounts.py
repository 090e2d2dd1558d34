"""Projects, users, project memberships with roles, access tokens (devices and API sessions), and the
state of password-login throttling (per account and per client address, shared by every worker)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, BigIntPK, UTCDateTime, utcnow

PROJECT_ROLES = ("manager", "coach", "analyst")


class Project(Base):
    """A programme's partition: its forms, people, devices and data."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)


class User(Base):
    """A person with a password; ``is_admin`` grants every permission everywhere."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    # HA1 = md5(username:realm:password) lets us answer OpenRosa Digest challenges without the password.
    digest_ha1: Mapped[str] = mapped_column(String(64))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The language this person reads the console in (fr, ar, en); NULL: the browser's Accept-Language.
    locale: Mapped[str | None] = mapped_column(String(10))
    # ODK Central's identity of a web user: an email (its login) and a display name. NULL for a person
    # created by username only; they sign in with the username in the email field.
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))


class Membership(Base):
    """A user's role in one project."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("project_id", "user_id"),
        CheckConstraint("role IN ('manager', 'coach', 'analyst')", name="role"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AccessToken(Base):
    """A bearer secret, stored hashed: a device's token (coach in one project) or a user's API session."""

    __tablename__ = "access_tokens"
    __table_args__ = (
        CheckConstraint("kind IN ('device', 'session')", name="kind"),
        CheckConstraint("form_access IN ('all', 'assigned')", name="form_access"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # sha256 of the token: tokens are long random strings, so a fast hash is safe and lookups are O(1).
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(200))
    project_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Which forms a device sees: ``all`` of its project (a phone set up in the console), or only the forms
    # assigned to it (``assigned``: an app user created through Central's API, which starts with none).
    form_access: Mapped[str] = mapped_column(String(10), default="all", server_default="all")


class AppUserForm(Base):
    """A form assigned to an app user (a device token with ``form_access = 'assigned'``)."""

    __tablename__ = "app_user_forms"

    token_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("access_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    form_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("forms.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LoginThrottle(Base):
    """Recent failed logins of one key (an account, a client address, or the pair) and when it may try again.

    Shared by every worker and host through the database; forgotten once no failure happened for a
    while (``server.services.logins``). Never a lock: ``next_attempt_at`` is at most a short pause away.
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(BigInteger, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DigestNonceUse(Base):
    """One accepted Digest response, by nonce and nonce count: a second use of the pair is a replay.

    Rows older than twice a nonce's lifetime are deleted (their nonce is refused as stale anyway).
    """

    __tablename__ = "digest_nonce_uses"

    nonce: Mapped[str] = mapped_column(String(100), primary_key=True)
    nc: Mapped[str] = mapped_column(String(8), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
