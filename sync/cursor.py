"""The opaque pull cursor: where a device is in the change log.

A cursor is ``<payload>.<signature>``, both base64url without padding. The payload is a small
canonical JSON object ``{"v": 1, "seq": <last change-log seq served>, "sc": <scopes hash>}`` and the
signature is HMAC-SHA256 of the payload bytes under a server key handed in by the caller (never read
from the environment here). Clients must treat the cursor as opaque; the signature lets the server
trust ``seq`` without a lookup and turns any tampering or truncation into :class:`InvalidCursor`
(research §8.9: commit-ordered seq, no timestamps anywhere).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal, TypeAlias

CURSOR_VERSION = 1

CursorErrorCode: TypeAlias = Literal["malformed_cursor", "bad_cursor_signature", "unsupported_cursor"]


@dataclass(frozen=True, slots=True)
class PullCursor:
    """A decoded cursor: changes with ``seq`` greater than this were not served yet."""

    seq: int
    scopes_hash: str = ""
    version: int = CURSOR_VERSION


class InvalidCursor(ValueError):
    """A cursor that is malformed, tampered with, or from an unsupported version (HTTP 400)."""

    def __init__(self, code: CursorErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: CursorErrorCode = code


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # Padding is stripped on encode; restore it, and refuse anything outside the url-safe alphabet
    # (urlsafe_b64decode alone silently drops unknown characters).
    if not text or any(c not in _B64URL_ALPHABET for c in text):
        raise InvalidCursor("malformed_cursor", "cursor is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("malformed_cursor", "cursor is not base64url") from exc


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _signature(payload: bytes, key: bytes) -> bytes:
    if not key:
        raise ValueError("the cursor signing key must not be empty")
    return hmac.new(key, payload, hashlib.sha256).digest()


def encode_cursor(seq: int, key: bytes, *, scopes_hash: str = "") -> str:
    """Sign and encode the position ``seq`` (and the device's scopes hash) as an opaque cursor."""
    if seq < 0:
        raise ValueError("seq must be >= 0")
    payload = json.dumps(
        {"v": CURSOR_VERSION, "seq": seq, "sc": scopes_hash}, sort_keys=True, separators=(",", ":")
    ).encode("utf-8")
    return f"{_b64encode(payload)}.{_b64encode(_signature(payload, key))}"


def decode_cursor(token: str, key: bytes) -> PullCursor:
    """Verify and decode a cursor; raise :class:`InvalidCursor` if it is bad or tampered with."""
    parts = token.split(".")
    if len(parts) != 2:
        raise InvalidCursor("malformed_cursor", "cursor must have two parts")
    payload, signature = _b64decode(parts[0]), _b64decode(parts[1])
    # Check the signature before parsing anything the client could have forged.
    if not hmac.compare_digest(signature, _signature(payload, key)):
        raise InvalidCursor("bad_cursor_signature", "cursor signature does not match")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidCursor("malformed_cursor", "cursor payload is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidCursor("malformed_cursor", "cursor payload is not an object")
    version, seq, scopes_hash = data.get("v"), data.get("seq"), data.get("sc", "")
    if version != CURSOR_VERSION:
        raise InvalidCursor("unsupported_cursor", f"cursor version {version!r} is not supported")
    # bool is an int subclass: refuse it explicitly.
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(scopes_hash, str):
        raise InvalidCursor("malformed_cursor", "cursor payload has the wrong shape")
    return PullCursor(seq=seq, scopes_hash=scopes_hash, version=version)
