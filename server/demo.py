"""Demo data for ``make run``: a project, one user per role, a device and the example forms."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import AccessToken, Project, User
from server.services import accounts as svc
from server.store import get_store

DEMO_PROJECT = "Démo — Coopératives et entrepreneures"
DEMO_PASSWORD = "fieldsync-demo"
DEMO_USERS = (("admin", "admin"), ("manager", "manager"), ("coach", "coach"), ("analyst", "analyst"))
DEMO_DEVICE = "Téléphone démo"

# Later areas (forms, submissions) append functions here: (session, project_id) -> lines to print.
DEMO_STEPS: list[Callable[..., Iterator[str]]] = []


def load_demo(base_url: str) -> Iterator[str]:
    """Create the demo objects that do not exist yet and describe how to use them."""
    session = get_store().sessions()
    try:
        project = session.scalars(select(Project).where(Project.name == DEMO_PROJECT)).one_or_none()
        if project is None:
            project = svc.create_project(session, DEMO_PROJECT)
        for username, role in DEMO_USERS:
            exists = session.scalars(select(User).where(User.username == username)).one_or_none()
            if exists is None:
                svc.create_user(session, username, DEMO_PASSWORD, is_admin=role == "admin")
                if role != "admin":
                    svc.set_membership(session, project.id, username, role)
        # A device token's secret is only known when it is issued: issue a fresh one per demo load,
        # revoking the previous demo device so only one works.
        for old in session.scalars(
            select(AccessToken).where(AccessToken.project_id == project.id, AccessToken.name == DEMO_DEVICE)
        ).all():
            if old.revoked_at is None:
                svc.revoke_device(session, project.id, old.id)
        issued = svc.create_device(session, project.id, DEMO_DEVICE)
        for step in DEMO_STEPS:
            yield from step(session, project.id)
        base = base_url.rstrip("/")
        yield f"demo project: {DEMO_PROJECT} (id {project.id})"
        yield f"users (password '{DEMO_PASSWORD}'): " + ", ".join(u for u, _ in DEMO_USERS)
        yield f"ODK Collect server URL: {base}/v1/key/{issued.token}/projects/{project.id}"
        yield f"or with a password: {base}/v1/projects/{project.id} (user coach / {DEMO_PASSWORD})"
    finally:
        session.close()


def publish_example_forms(session: Session, project_id: int) -> Iterator[str]:
    """Publish ``examples/forms/*.xlsx`` into the demo project (an unchanged example is left as it is)."""
    from server.config import PROJECT_ROOT
    from server.errors import ApiError
    from server.services import forms as forms_svc

    settings = forms_svc.UploadSettings(convert_inline=True)  # the CLI has no request to keep responsive
    for path in sorted((PROJECT_ROOT / "examples" / "forms").glob("*.xlsx")):
        try:
            result = forms_svc.create_form_version(
                session, project_id, path.read_bytes(), path.name, publish=True, actor="demo", settings=settings
            )
        except ApiError as exc:
            yield f"form {path.name}: not published ({exc.code}: {exc.message})"
            continue
        state = "published" if result.created else "already published"
        yield f"form {result.xml_form_id} version {result.version}: {state}"


DEMO_STEPS.append(publish_example_forms)


def load_demo_programme(session: Session, project_id: int) -> Iterator[str]:
    """The synthetic programme's submissions and indicators (see ``server.demo_programme``)."""
    from server.demo_programme import load_programme

    yield from load_programme(session, project_id)


DEMO_STEPS.append(load_demo_programme)
