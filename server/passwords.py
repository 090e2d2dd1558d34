"""Password and token hashing: argon2id for passwords, sha256 for long random tokens."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

DIGEST_REALM = "Fieldsync"

# OWASP's minimum argon2id profile: ~20 ms per check on these machines.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def hash_password(password: str) -> str:
    """Hash a password with argon2id."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Check ``password`` against an argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def digest_ha1(username: str, password: str) -> str:
    """Return RFC 2617's HA1 = md5(username:realm:password) for Digest authentication."""
    return hashlib.md5(f"{username}:{DIGEST_REALM}:{password}".encode(), usedforsecurity=False).hexdigest()


def new_token() -> str:
    """Return a new random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Return the stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()
