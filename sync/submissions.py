"""What an incoming submission does to the store, and how edit chains are ordered.

This module owns the submission rules of SYNC.md ("Identity and idempotency", "Attachments"), as pure
functions over small frozen values the server fills from its database:

* ``decide_submission``: new → ``Created``; identical content (same ``content_hash``) → ``Duplicate``
  with the new attachment names to add (OpenRosa multi-POST re-sends the same XML with more files);
  same ``instance_id`` with other content → ``Rejected("id_conflict")`` (the server keeps the refused
  payload for review); an edit (``deprecated_id``) → ``Updated``, whether or not its predecessor has
  arrived (it is linked when it does: never a dead end); unknown form or version → ``Quarantined``
  (raw payload kept, an admin can release it); closed form → ``Rejected("form_closed")`` (the OpenRosa
  door answers 403). Accepted content whose blobs are not all present → ``AwaitingAttachments``.
  Identity is checked before the form's state, so a retry of something already stored is always a
  ``Duplicate``, even after the form was closed.
* ``content_hash_xml`` / ``content_hash_json``: the content hash is sha256 of the exact XML bytes, or
  of the canonical JSON (sorted keys, no spaces, UTF-8) for JSON data.
* ``version_chain``: the versions of one submission ordered by their ``deprecated_id`` links, as a
  function of the set (arrival order never matters), with the current version last.
* ``attachments_status``: which expected attachments are not present yet.

Missing attachments are named by sha256 when the client declared it (JSON push: the client uploads
that blob) and by file name otherwise (OpenRosa: the phone re-posts that file).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from sync.outcomes import (
    FORM_CLOSED,
    ID_CONFLICT,
    INVALID_EDIT,
    UNKNOWN_FORM,
    UNKNOWN_FORM_VERSION,
    AwaitingAttachments,
    Created,
    Duplicate,
    Quarantined,
    Rejected,
    Updated,
)

FormState: TypeAlias = Literal["open", "closing", "closed"]
"""ODK Central's form states: ``closing`` still accepts submissions, ``closed`` refuses them."""


def content_hash_xml(xml: bytes) -> str:
    """The content hash of an OpenRosa submission: sha256 hex of the exact XML bytes."""
    return hashlib.sha256(xml).hexdigest()


def content_hash_json(data: Mapping[str, Any]) -> str:
    """The content hash of JSON submission data: sha256 hex of its canonical JSON."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """A file of a submission: its name in the form data and the sha256 of its bytes."""

    name: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True, slots=True)
class FormInfo:
    """What the server knows of the target form: its state and the versions it ever published."""

    form_id: str
    state: FormState
    known_versions: frozenset[str]


@dataclass(frozen=True, slots=True)
class IncomingSubmission:
    """A submission as delivered (one OpenRosa POST or one JSON push item).

    ``expected_attachments`` are the file names the data references (``SubmissionRecord.attachments``);
    ``attachments`` are the files delivered or declared with this delivery, with their hashes.
    """

    instance_id: str
    form_id: str
    form_version: str
    content_hash: str
    deprecated_id: str | None = None
    expected_attachments: tuple[str, ...] = ()
    attachments: tuple[AttachmentRef, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredSubmission:
    """The stored version with the same ``instance_id``: its content hash and attached files."""

    instance_id: str
    content_hash: str
    attachments: tuple[AttachmentRef, ...] = ()


@dataclass(frozen=True, slots=True)
class AttachmentsStatus:
    """Whether every expected attachment is present, and which are not (sorted)."""

    complete: bool
    missing: tuple[str, ...]


def attachments_status(expected: Iterable[str], present: Iterable[str]) -> AttachmentsStatus:
    """Compare expected attachment keys (names or sha256) with the ones present."""
    missing = tuple(sorted(set(expected) - set(present)))
    return AttachmentsStatus(complete=not missing, missing=missing)


def _missing_attachments(
    incoming: IncomingSubmission, stored: StoredSubmission | None, present_blobs: Collection[str]
) -> tuple[str, ...]:
    known: dict[str, str] = {}
    if stored is not None:
        known.update((ref.name, ref.sha256) for ref in stored.attachments)
    for ref in incoming.attachments:
        # A file already attached keeps its first bytes: attaching is idempotent, never a replacement.
        known.setdefault(ref.name, ref.sha256)
    wanted = set(incoming.expected_attachments) | set(known)
    expected_keys = [known.get(name, name) for name in wanted]
    present_keys = [sha for sha in known.values() if sha in present_blobs]
    return attachments_status(expected_keys, present_keys).missing


SubmissionOutcome: TypeAlias = Created | Updated | Duplicate | AwaitingAttachments | Quarantined | Rejected


def decide_submission(
    incoming: IncomingSubmission,
    stored: StoredSubmission | None,
    form: FormInfo | None,
    *,
    present_blobs: Collection[str] = frozenset(),
    predecessor_known: bool = False,
) -> SubmissionOutcome:
    """Decide what an incoming submission does, given the stored one with its id and its form.

    ``present_blobs`` are the sha256 the blob store holds (including files of this delivery once
    saved); ``predecessor_known`` says whether the ``deprecated_id`` version is stored.
    """
    if incoming.deprecated_id is not None and incoming.deprecated_id == incoming.instance_id:
        return Rejected(INVALID_EDIT, "an edit cannot deprecate itself")
    if stored is not None:
        if stored.content_hash != incoming.content_hash:
            return Rejected(ID_CONFLICT, f"instance {incoming.instance_id} was received with other content")
        already = {ref.name for ref in stored.attachments}
        to_add = tuple(sorted({ref.name for ref in incoming.attachments} - already))
        duplicate = Duplicate(attachments_to_add=to_add)
        missing = _missing_attachments(incoming, stored, present_blobs)
        return AwaitingAttachments(missing=missing, accepted=duplicate) if missing else duplicate
    if form is None:
        return Quarantined(UNKNOWN_FORM, f"form {incoming.form_id!r} is not known")
    if form.state == "closed":
        return Rejected(FORM_CLOSED, f"form {incoming.form_id!r} is closed")
    if incoming.form_version not in form.known_versions:
        return Quarantined(UNKNOWN_FORM_VERSION, f"form {incoming.form_id!r} has no version {incoming.form_version!r}")
    accepted: Created | Updated = (
        Updated(deprecated_id=incoming.deprecated_id, predecessor_known=predecessor_known)
        if incoming.deprecated_id is not None
        else Created()
    )
    missing = _missing_attachments(incoming, None, present_blobs)
    return AwaitingAttachments(missing=missing, accepted=accepted) if missing else accepted


# ---------------------------------------------------------------------------------------------------
# Edit chains


@dataclass(frozen=True, slots=True)
class SubmissionVersion:
    """One version of a submission: its id, the id it replaces, and its device capture time (ms).

    ``captured_at_ms`` only orders versions the links cannot order (a fork, or a gap); never use the
    server's receive time here, it would make the chain depend on arrival order.
    """

    instance_id: str
    deprecated_id: str | None = None
    captured_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class VersionChain:
    """The versions of one submission in edit order, the current one last.

    ``missing`` are replaced ids not received yet (the chain has gaps until they arrive); ``heads``
    are the versions nothing replaces: more than one means concurrent edits (``forked``), and the
    current one is then a deterministic provisional pick to review.
    """

    ordered: tuple[str, ...]
    current: str
    heads: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def forked(self) -> bool:
        """Whether two edits replace the same version (or the chain has several ends)."""
        return len(self.heads) > 1

    @property
    def complete(self) -> bool:
        """Whether every replaced version has arrived."""
        return not self.missing


def version_chain(versions: Iterable[SubmissionVersion]) -> VersionChain:
    """Order the versions of one submission by their ``deprecated_id`` links, whatever their arrival order.

    The fragment starting at the original (no ``deprecated_id``) comes first; fragments whose first
    version replaces a missing one follow (they edit something), by capture time then id. Inside a
    fragment versions go by link depth, ties by capture time then id. The current version is the last.
    """
    by_id: dict[str, SubmissionVersion] = {}
    for version in versions:
        # A duplicate id keeps the smallest record, so the chain stays a function of the set.
        kept = by_id.get(version.instance_id)
        key = (version.deprecated_id or "", version.captured_at_ms)
        if kept is None or key < (kept.deprecated_id or "", kept.captured_at_ms):
            by_id[version.instance_id] = version
    if not by_id:
        raise ValueError("a version chain needs at least one version")

    def tie(v: SubmissionVersion) -> tuple[int, str]:
        return (v.captured_at_ms, v.instance_id)

    children: dict[str, list[SubmissionVersion]] = {}
    for v in by_id.values():
        if v.deprecated_id is not None and v.deprecated_id in by_id:
            children.setdefault(v.deprecated_id, []).append(v)
    originals = sorted((v for v in by_id.values() if v.deprecated_id is None), key=tie)
    dangling = sorted(
        (v for v in by_id.values() if v.deprecated_id is not None and v.deprecated_id not in by_id), key=tie
    )
    missing = tuple(sorted({v.deprecated_id for v in dangling if v.deprecated_id is not None}))

    ordered: list[str] = []
    visited: set[str] = set()

    def add_fragment(root: SubmissionVersion) -> None:
        level = [root]
        while level:
            level = [v for v in sorted(level, key=tie) if v.instance_id not in visited]
            for v in level:
                visited.add(v.instance_id)
                ordered.append(v.instance_id)
            level = [c for v in level for c in children.get(v.instance_id, [])]

    for root in [*originals, *dangling]:
        add_fragment(root)
    # Versions only reachable through a cycle of links (never produced by a real client) go last.
    for v in sorted(by_id.values(), key=tie):
        if v.instance_id not in visited:
            add_fragment(v)

    heads = tuple(sorted(i for i in by_id if i not in children))
    return VersionChain(ordered=tuple(ordered), current=ordered[-1], heads=heads, missing=missing)
