"""Submission decisions and edit chains (SYNC.md "Identity and idempotency", "Attachments").

Rules: S1 new → created; S2 identical re-send → duplicate, adding new files (OpenRosa multi-POST);
S3 same id, other content → rejected id_conflict; S4 an edit is stored whether or not its predecessor
arrived; S5 unknown form or version → quarantined; S6 closed form → rejected form_closed (a re-send of
something stored stays a duplicate); S7 missing blobs → awaiting_attachments; C1 edit chains are ordered
by their links whatever the arrival order.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from sync.submissions import (
    AttachmentRef,
    FormInfo,
    IncomingSubmission,
    StoredSubmission,
    SubmissionVersion,
    attachments_status,
    content_hash_json,
    content_hash_xml,
    decide_submission,
    version_chain,
)

VISIT_XML = b'<data id="coop_visit" version="2026-03-01"><coop>Espoir</coop><photo>front.jpg</photo></data>'
PHOTO = AttachmentRef("front.jpg", "a" * 64, 412_331)
RECEIPT = AttachmentRef("receipt.jpg", "b" * 64, 90_000)
COOP_VISIT = FormInfo("coop_visit", "open", frozenset({"2026-01-15", "2026-03-01"}))


def visit(**changes: object) -> IncomingSubmission:
    base: dict[str, object] = {
        "instance_id": "uuid:visit-1",
        "form_id": "coop_visit",
        "form_version": "2026-03-01",
        "content_hash": content_hash_xml(VISIT_XML),
        "expected_attachments": ("front.jpg",),
        "attachments": (PHOTO,),
    }
    base.update(changes)
    return IncomingSubmission(**base)  # type: ignore[arg-type]


STORED_VISIT = StoredSubmission("uuid:visit-1", content_hash_xml(VISIT_XML), (PHOTO,))
ALL_BLOBS = frozenset({PHOTO.sha256, RECEIPT.sha256})


@pytest.mark.parametrize(
    ("incoming", "stored", "form", "expected"),
    [
        (visit(), None, COOP_VISIT, Created()),
        (visit(form_version="2026-01-15"), None, COOP_VISIT, Created()),
        (visit(), STORED_VISIT, COOP_VISIT, Duplicate()),
        (visit(attachments=(PHOTO, RECEIPT)), STORED_VISIT, COOP_VISIT, Duplicate(("receipt.jpg",))),
        (visit(content_hash="0" * 64), STORED_VISIT, COOP_VISIT, Rejected(ID_CONFLICT)),
        (
            visit(instance_id="uuid:visit-2", deprecated_id="uuid:visit-1"),
            None,
            COOP_VISIT,
            Updated("uuid:visit-1", False),
        ),
        (visit(instance_id="uuid:visit-1", deprecated_id="uuid:visit-1"), None, COOP_VISIT, Rejected(INVALID_EDIT)),
        (visit(form_id="coop_audit"), None, None, Quarantined(UNKNOWN_FORM)),
        (visit(form_version="2027-01-01"), None, COOP_VISIT, Quarantined(UNKNOWN_FORM_VERSION)),
        (visit(), None, FormInfo("coop_visit", "closed", COOP_VISIT.known_versions), Rejected(FORM_CLOSED)),
        (visit(), None, FormInfo("coop_visit", "closing", COOP_VISIT.known_versions), Created()),
        (visit(), STORED_VISIT, FormInfo("coop_visit", "closed", COOP_VISIT.known_versions), Duplicate()),
    ],
    ids=[
        "S1-new-is-created",
        "S1-older-known-version-is-accepted",
        "S2-identical-resend-is-duplicate",
        "S2-multi-post-adds-the-new-file",
        "S3-same-id-other-content-is-id-conflict",
        "S4-edit-before-its-predecessor-is-stored",
        "S4-edit-of-itself-is-rejected",
        "S5-unknown-form-is-quarantined",
        "S5-unknown-version-is-quarantined",
        "S6-closed-form-is-rejected",
        "S6-closing-form-still-accepts",
        "S6-resend-after-closing-is-still-duplicate",
    ],
)
def test_decide_submission(
    incoming: IncomingSubmission, stored: StoredSubmission | None, form: FormInfo | None, expected: object
) -> None:
    outcome = decide_submission(incoming, stored, form, present_blobs=ALL_BLOBS)
    if isinstance(outcome, Rejected | Quarantined):
        assert isinstance(expected, Rejected | Quarantined)
        assert (outcome.status, outcome.reason) == (expected.status, expected.reason)
        assert outcome.detail  # the reviewer sees why
    else:
        assert outcome == expected


def test_s4_edit_whose_predecessor_is_stored_is_updated() -> None:
    edit = visit(instance_id="uuid:visit-2", deprecated_id="uuid:visit-1")
    outcome = decide_submission(edit, None, COOP_VISIT, present_blobs=ALL_BLOBS, predecessor_known=True)
    assert outcome == Updated(deprecated_id="uuid:visit-1", predecessor_known=True)
    assert (outcome.status, outcome.stored) == ("updated", True)


@pytest.mark.parametrize(
    ("incoming", "present", "missing"),
    [
        (visit(attachments=()), frozenset(), ("front.jpg",)),
        (visit(), frozenset(), (PHOTO.sha256,)),
        (visit(expected_attachments=("front.jpg", "back.jpg")), ALL_BLOBS, ("back.jpg",)),
    ],
    ids=["openrosa-file-not-posted-yet", "json-declared-blob-not-uploaded", "one-of-two-files-missing"],
)
def test_s7_missing_blobs_are_listed_and_the_submission_is_still_stored(
    incoming: IncomingSubmission, present: frozenset[str], missing: tuple[str, ...]
) -> None:
    outcome = decide_submission(incoming, None, COOP_VISIT, present_blobs=present)
    assert outcome == AwaitingAttachments(missing=missing, accepted=Created())
    assert (outcome.status, outcome.stored) == ("awaiting_attachments", True)


def test_s7_multi_post_completing_the_files_is_a_duplicate_adding_them() -> None:
    first_post = StoredSubmission("uuid:visit-1", content_hash_xml(VISIT_XML), ())
    outcome = decide_submission(visit(), first_post, COOP_VISIT, present_blobs=ALL_BLOBS)
    assert outcome == Duplicate(attachments_to_add=("front.jpg",))


def test_attachments_status() -> None:
    assert attachments_status(["a", "b", "c"], ["b", "z"]).missing == ("a", "c")
    assert attachments_status(["a"], ["a"]).complete


def test_content_hashes_are_canonical() -> None:
    assert content_hash_json({"b": 1, "a": "é"}) == content_hash_json({"a": "é", "b": 1})
    assert content_hash_json({"a": 1}) != content_hash_json({"a": 2})
    assert content_hash_xml(VISIT_XML) != content_hash_xml(VISIT_XML + b"\n")


def test_c1_edits_sent_newest_first_end_with_the_newest_current() -> None:
    arrived = [
        SubmissionVersion("v3", "v2"),
        SubmissionVersion("v2", "v1"),
        SubmissionVersion("v1"),
    ]
    chain = version_chain(arrived)
    assert (chain.ordered, chain.current, chain.heads, chain.missing) == (("v1", "v2", "v3"), "v3", ("v3",), ())


def test_c1_edit_arriving_before_its_predecessor_is_current_and_the_gap_is_reported() -> None:
    chain = version_chain([SubmissionVersion("v3", "v2"), SubmissionVersion("v1")])
    assert (chain.ordered, chain.current, chain.missing, chain.complete) == (("v1", "v3"), "v3", ("v2",), False)


def test_c1_two_edits_of_the_same_version_fork_and_are_picked_deterministically() -> None:
    chain = version_chain(
        [
            SubmissionVersion("v1"),
            SubmissionVersion("coach-edit", "v1", captured_at_ms=2_000),
            SubmissionVersion("supervisor-edit", "v1", captured_at_ms=1_000),
        ]
    )
    assert chain.forked
    assert chain.heads == ("coach-edit", "supervisor-edit")
    assert chain.current == "coach-edit"  # captured later


@st.composite
def edit_chains(draw: st.DrawFn, *, clocks_agree: bool = False) -> list[SubmissionVersion]:
    """A chain of edits; capture times are random, or increasing along the chain when clocks agree."""
    length = draw(st.integers(1, 7))
    ids = [f"uuid:v{i}" for i in range(length)]
    times = draw(st.lists(st.integers(0, 3), min_size=length, max_size=length))
    if clocks_agree:
        times = [sum(times[: i + 1]) + i for i in range(length)]
    return [
        SubmissionVersion(instance_id=vid, deprecated_id=ids[i - 1] if i else None, captured_at_ms=times[i])
        for i, vid in enumerate(ids)
    ]


@settings(deadline=None, max_examples=60)
@given(chain=edit_chains(), data=st.data())
def test_c1_chain_order_is_independent_of_arrival_order(chain: list[SubmissionVersion], data: st.DataObject) -> None:
    arrived = data.draw(st.permutations(chain)) + data.draw(st.lists(st.sampled_from(chain), max_size=2))
    result = version_chain(arrived)
    assert result.ordered == tuple(v.instance_id for v in chain)
    assert result.current == chain[-1].instance_id
    assert not result.forked and result.complete


@settings(deadline=None, max_examples=60)
@given(chain=edit_chains(clocks_agree=True), data=st.data())
def test_c1_chain_with_missing_versions_is_a_function_of_the_set_and_ends_at_the_newest(
    chain: list[SubmissionVersion], data: st.DataObject
) -> None:
    # With gaps only capture times can order the fragments; once the gaps fill, links alone decide.
    newest = chain[-1]
    present = [newest, *data.draw(st.lists(st.sampled_from(chain), unique=True))]
    result = version_chain(present)
    assert result == version_chain(data.draw(st.permutations(present)))
    assert result.current == newest.instance_id
    present_ids = {v.instance_id for v in present}
    assert set(result.ordered) == present_ids
    assert result.complete == all(v.deprecated_id is None or v.deprecated_id in present_ids for v in present)
