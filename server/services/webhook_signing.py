"""Standard Webhooks signatures (https://www.standardwebhooks.com): secrets, and the three headers of a message.

A secret is ``whsec_`` followed by base64 of random bytes; the signature is ``v1,`` followed by
base64 of HMAC-SHA256(secret bytes, ``"{webhook-id}.{webhook-timestamp}.{body}"``). Several
signatures (during a secret rotation) are separated by spaces; a receiver accepts any that matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


def message_id(event_id: int) -> str:
    """The ``webhook-id`` of an event: the same at every attempt and replay, so receivers drop duplicates."""
    return f"msg_{event_id}"


def new_secret() -> str:
    """A fresh signing secret, as receivers' Standard Webhooks libraries expect it."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of one message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(keys: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers, signed with every key."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(key, message_id, timestamp, body) for key in keys),
    }
