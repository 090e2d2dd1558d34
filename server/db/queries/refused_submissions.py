"""Queries over refused submissions: payloads kept for review when their instance id was stored with other XML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from server.db.models import AccessToken, User
from server.db.models.forms import Form
from server.db.models.submissions import RefusedSubmission, Submission, SubmissionVersion

# What a listing shows of each payload: everything but the XML itself (its size instead).
_SUMMARY = (
    RefusedSubmission.id,
    Form.xml_form_id,
    RefusedSubmission.instance_id,
    RefusedSubmission.reason,
    RefusedSubmission.xml_sha256,
    func.length(RefusedSubmission.xml).label("size"),
    RefusedSubmission.source,
    RefusedSubmission.received_at,
    User.username.label("submitter"),
    AccessToken.name.label("device"),
    RefusedSubmission.device_id,
    RefusedSubmission.state,
    RefusedSubmission.decided_by,
    RefusedSubmission.decided_at,
    RefusedSubmission.released_instance_id,
)


def _summary_statement(project_id: int) -> Any:
    return (
        select(*_SUMMARY)
        .join(Form, Form.id == RefusedSubmission.form_id)
        .outerjoin(User, User.id == RefusedSubmission.submitter_id)
        .outerjoin(AccessToken, AccessToken.id == RefusedSubmission.device_token_id)
        .where(RefusedSubmission.project_id == project_id)
    )


def list_refused(
    session: Session, project_id: int, xml_form_id: str | None, limit: int, after_id: int
) -> Sequence[Row[Any]]:
    """Return up to ``limit`` refused payloads of a project after ``after_id``, oldest first (no XML)."""
    stmt = _summary_statement(project_id).where(RefusedSubmission.id > after_id)
    if xml_form_id is not None:
        stmt = stmt.where(Form.xml_form_id == xml_form_id)
    return session.execute(stmt.order_by(RefusedSubmission.id).limit(limit)).all()


def count_refused(session: Session, project_id: int, xml_form_id: str | None) -> int:
    """How many refused payloads a project holds (of one form when ``xml_form_id`` is given)."""
    stmt = _summary_statement(project_id)
    if xml_form_id is not None:
        stmt = stmt.where(Form.xml_form_id == xml_form_id)
    return int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


def get_refused(session: Session, project_id: int, refused_id: int) -> tuple[Row[Any], bytes, str | None] | None:
    """Return one refused payload's summary, its XML and the sha256 of the XML stored under its instance id."""
    row = session.execute(
        _summary_statement(project_id)
        .add_columns(RefusedSubmission.xml, SubmissionVersion.xml_sha256.label("stored_sha256"))
        .outerjoin(
            SubmissionVersion,
            (SubmissionVersion.project_id == RefusedSubmission.project_id)
            & (SubmissionVersion.form_id == RefusedSubmission.form_id)
            & (SubmissionVersion.instance_id == RefusedSubmission.instance_id),
        )
        .where(RefusedSubmission.id == refused_id)
    ).one_or_none()
    if row is None:
        return None
    return row, bytes(row.xml), row.stored_sha256


def decide(
    session: Session, project_id: int, refused_id: int, state: str, actor: str, at: Any, released: str | None
) -> bool:
    """Move a held payload to ``state`` (compare-and-set: ``False`` when it is not held any more)."""
    result = session.execute(
        update(RefusedSubmission)
        .where(
            RefusedSubmission.project_id == project_id,
            RefusedSubmission.id == refused_id,
            RefusedSubmission.state == "held",
        )
        .values(state=state, decided_by=actor, decided_at=at, released_instance_id=released)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def chain_head(session: Session, project_id: int, refused_id: int) -> str | None:
    """The current instance id of the stored edit chain a refused payload collided with (``None``: none)."""
    return session.execute(
        select(Submission.current_instance_id)
        .join(SubmissionVersion, SubmissionVersion.submission_id == Submission.id)
        .join(
            RefusedSubmission,
            (RefusedSubmission.project_id == SubmissionVersion.project_id)
            & (RefusedSubmission.form_id == SubmissionVersion.form_id)
            & (RefusedSubmission.instance_id == SubmissionVersion.instance_id),
        )
        .where(RefusedSubmission.project_id == project_id, RefusedSubmission.id == refused_id)
        .limit(1)
    ).scalar_one_or_none()
