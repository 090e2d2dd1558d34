"""The store's own integrity for submissions: composite foreign keys (migration 0009), on both backends.

Rules:
- I1 a version has its submission's project and form; any other pair is refused by the database.
- I2 a submission's form belongs to the submission's project; a form of another project is refused.
- I3 deleting a project still deletes its submissions and their versions (through its forms).

Each refused write runs in a SAVEPOINT, so the test transaction stays usable afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db.models import Project
from server.db.models.forms import Form
from server.db.models.submissions import Submission, SubmissionVersion
from tests.conftest import Personas
from tests.server.fixtures_forms import publish_form
from tests.server.test_submissions_support import PHOTO_XFORM

SIBLING_XFORM = PHOTO_XFORM.replace(b'id="photo_visit"', b'id="photo_revisit"')


@dataclass(frozen=True)
class Place:
    """A published form as the tables see it: its project, its row id and its current version's row id."""

    project_id: int
    form_id: int
    form_version_id: int


@dataclass(frozen=True)
class Forms:
    """``home`` and ``sibling`` share the personas' project; ``abroad`` is ``home``'s XForm in the other project."""

    home: Place
    sibling: Place
    abroad: Place


def _place(session: Session, project_id: int, form_id: int) -> Place:
    form = session.get(Form, form_id)
    assert form is not None and form.current_version_id is not None
    return Place(project_id, form_id, form.current_version_id)


@pytest.fixture
def forms(app: Flask, personas: Personas, session: Session) -> Forms:
    home = publish_form(app, personas.project_id, PHOTO_XFORM, "photo_visit.xml")[0]
    sibling = publish_form(app, personas.project_id, SIBLING_XFORM, "photo_revisit.xml")[0]
    abroad = publish_form(app, personas.other_project_id, PHOTO_XFORM, "photo_visit.xml")[0]
    return Forms(
        _place(session, personas.project_id, home),
        _place(session, personas.project_id, sibling),
        _place(session, personas.other_project_id, abroad),
    )


def _submission(session: Session, project_id: int, form_id: int, instance_id: str) -> Submission:
    submission = Submission(
        project_id=project_id, form_id=form_id, instance_id=instance_id, current_instance_id=instance_id
    )
    session.add(submission)
    session.flush()
    return submission


def _version(session: Session, submission: Submission, project_id: int, form_id: int, form_version_id: int) -> None:
    session.add(
        SubmissionVersion(
            submission_id=submission.id,
            project_id=project_id,
            form_id=form_id,
            form_version_id=form_version_id,
            instance_id=submission.instance_id,
            xml=b"<data/>",
            xml_sha256="0" * 64,
            record={},
        )
    )
    session.flush()


def test_a_version_with_its_submissions_project_and_form_is_stored(forms: Forms, session: Session) -> None:
    home = forms.home
    submission = _submission(session, home.project_id, home.form_id, "uuid:integrity-ok")
    _version(session, submission, home.project_id, home.form_id, home.form_version_id)
    count = select(func.count()).select_from(SubmissionVersion).where(SubmissionVersion.submission_id == submission.id)
    assert session.scalar(count) == 1


@pytest.mark.parametrize(
    ("project_of", "form_of"),
    [
        ("abroad", "abroad"),
        ("abroad", "home"),
        ("home", "sibling"),
        ("home", "abroad"),
    ],
    ids=["other-project-and-its-form", "other-project-same-form", "sibling-form", "form-of-other-project"],
)
def test_a_version_elsewhere_than_its_submission_is_refused(
    forms: Forms, session: Session, project_of: str, form_of: str
) -> None:
    home = forms.home
    submission = _submission(session, home.project_id, home.form_id, "uuid:integrity-version")
    project_id = getattr(forms, project_of).project_id
    form = getattr(forms, form_of)
    with pytest.raises(IntegrityError), session.begin_nested():
        _version(session, submission, project_id, form.form_id, form.form_version_id)
    # The savepoint is gone, the transaction is not: the right version is still accepted.
    _version(session, submission, home.project_id, home.form_id, home.form_version_id)


@pytest.mark.parametrize(
    ("project_of", "form_of"),
    [("home", "abroad"), ("abroad", "home")],
    ids=["form-of-the-other-project", "project-without-the-form"],
)
def test_a_submission_whose_form_is_in_another_project_is_refused(
    forms: Forms, session: Session, project_of: str, form_of: str
) -> None:
    project_id = getattr(forms, project_of).project_id
    with pytest.raises(IntegrityError), session.begin_nested():
        _submission(session, project_id, getattr(forms, form_of).form_id, "uuid:integrity-submission")
    assert _submission(session, forms.home.project_id, forms.home.form_id, "uuid:integrity-after").id > 0


def test_deleting_a_project_deletes_its_submissions_and_versions(forms: Forms, session: Session) -> None:
    abroad = forms.abroad
    submission = _submission(session, abroad.project_id, abroad.form_id, "uuid:integrity-cascade")
    _version(session, submission, abroad.project_id, abroad.form_id, abroad.form_version_id)
    session.execute(delete(Project).where(Project.id == abroad.project_id))
    left = (
        select(func.count()).select_from(Submission).where(Submission.project_id == abroad.project_id),
        select(func.count()).select_from(SubmissionVersion).where(SubmissionVersion.project_id == abroad.project_id),
    )
    assert [session.scalar(q) for q in left] == [0, 0]
