"""The per-item outcomes of the sync protocol, as typed values.

This module owns the vocabulary the push endpoint and the OpenRosa door report for one item
(SYNC.md, "Push"): every decision in ``sync`` returns one of these frozen values, never a boolean or
``None`` for "something went wrong". Each value has a ``status`` string equal to the JSON status of
the contract (``created``, ``updated``, ``duplicate``, ``conflict``, ``awaiting_attachments``,
``quarantined``, ``rejected``) and a ``stored`` flag saying whether the server keeps the item as
accepted data (quarantined and refused payloads are still kept raw for review, SYNC.md invariant 4).

Reason codes are stable strings (they cross the wire and appear in the review queue); they are listed
as constants below so the server maps them to HTTP codes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

ConflictKind: TypeAlias = Literal["soft", "hard"]

# Stable reason codes for Rejected / Quarantined.
ID_CONFLICT = "id_conflict"  # same instance_id / op_id, different content (OpenRosa 409)
DOT_CONFLICT = "dot_conflict"  # another op already uses this (writer, seq)
FORM_CLOSED = "form_closed"  # OpenRosa maps it to 403
FORM_NOT_ASSIGNED = "form_not_assigned"  # an app user sends a form it was not given (OpenRosa: 403)
UNPARSEABLE_ITEM = "unparseable_item"
FOREIGN_DOT = "foreign_dot"  # an op's writer is not the pushing device
INVALID_EDIT = "invalid_edit"  # an edit that deprecates itself
UNKNOWN_FORM = "unknown_form"  # OpenRosa maps it to 404
UNKNOWN_FORM_VERSION = "unknown_form_version"
SUBMISSION_DELETED = "deleted"  # the instance (or the one an edit replaces) was deleted (OpenRosa 409)
ITEM_MISMATCH = "item_mismatch"  # a pushed item's ids are not the ones its XML states


@dataclass(frozen=True, slots=True)
class Created:
    """A new item was stored."""

    @property
    def status(self) -> str:
        """The JSON status of the contract."""
        return "created"

    @property
    def stored(self) -> bool:
        """Whether the item is stored as accepted data."""
        return True


@dataclass(frozen=True, slots=True)
class Updated:
    """An edit (submission with ``deprecated_id``) or an entity update was stored.

    ``predecessor_known`` is False when the replaced version has not arrived yet: the edit is still
    stored, and the chain is linked when the predecessor arrives (never a dead end).
    """

    deprecated_id: str | None = None
    predecessor_known: bool = True

    @property
    def status(self) -> str:
        """The JSON status of the contract."""
        return "updated"

    @property
    def stored(self) -> bool:
        """Whether the item is stored as accepted data."""
        return True


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The same content was already stored; ``attachments_to_add`` are new file names to attach.

    OpenRosa multi-POST re-sends identical XML with more files: the server adds those idempotently.
    """

    attachments_to_add: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """The JSON status of the contract."""
        return "duplicate"

    @property
    def stored(self) -> bool:
        """Whether the item is stored as accepted data."""
        return True


@dataclass(frozen=True, slots=True)
class Conflict:
    """Stored and flagged for review: ``soft`` (merged, informational) or ``hard`` (competing values)."""

    kind: ConflictKind
    fields: tuple[str, ...]

    @property
    def status(self) -> str:
        """The JSON status of the contract."""
        return "conflict"

    @property
    def stored(self) -> bool:
        """Whether the item is stored as accepted data."""
        return True


@dataclass(frozen=True, slots=True)
class AwaitingAttachments:
    """Stored (as ``accepted`` says), but referenced blobs are ``missing``: the client uploads them."""

    missing: tuple[str, ...]
    accepted: Created | Updated | Duplicate = Created()

    @property
    def status(self) -> str:
        """The JSON status of the contract."""
        return "awaiting_attachments"

    @property
    def stored(self) -> bool:
        """Whether the item is stored as accepted data."""
        return True


@dataclass(frozen=True, slots=True)
class Quarantined:
    """The server could not use the item (unknown form/version...); the raw payload is kept."""

    reason: str
    detail: str = ""

    @property
    def status(self) -> str:
        """The JSON status of the contract."""
        return "quarantined"

    @property
    def stored(self) -> bool:
        """Whether the item is stored as accepted data (the raw payload is still kept)."""
        return False


@dataclass(frozen=True, slots=True)
class Rejected:
    """The item will never succeed as sent; the client moves it aside (payload kept for review)."""

    reason: str
    detail: str = ""

    @property
    def status(self) -> str:
        """The JSON status of the contract."""
        return "rejected"

    @property
    def stored(self) -> bool:
        """Whether the item is stored as accepted data."""
        return False


ItemOutcome: TypeAlias = Created | Updated | Duplicate | Conflict | AwaitingAttachments | Quarantined | Rejected
"""Every outcome one pushed item can have."""
