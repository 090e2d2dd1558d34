"""Demo data for ``make run``: a project, one user per role, a device and the example forms.

Loading it again changes nothing: the device's token is derived from the store's secret key
(HMAC), so the Collect URL printed yesterday still works today, and only its hash is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import Project, User
from server.errors import ApiError
from server.services import accounts as svc
from server.store import get_store

DEMO_PROJECT = "Démo — Coopératives et entrepreneures"
DEMO_PASSWORD = "fieldsync-demo"
DEMO_USERS = (("admin", "admin"), ("manager", "manager"), ("coach", "coach"), ("analyst", "analyst"))
DEMO_DEVICE = "Téléphone démo"

# Later areas (forms, submissions) append functions here: (session, project_id) -> lines to print.
DEMO_STEPS: list[Callable[..., Iterator[str]]] = []


def demo_device_token(secret_key: str, project_id: int) -> str:
    """Return the demo device's token: HMAC-SHA256 of the project id under the store's secret key (256 bits)."""
    digest = hmac.new(secret_key.encode(), f"fieldsync-demo-device:{project_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def load_demo(base_url: str, *, qr: bool = False) -> Iterator[str]:
    """Create the demo objects that do not exist yet and describe how to use them."""
    from server.services.collect_settings import collect_payload, qr_terminal

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
        token = demo_device_token(str(current_app.config["SECRET_KEY"]), project.id)
        try:
            device: svc.IssuedToken | None = svc.ensure_device(session, project.id, DEMO_DEVICE, token)
        except ApiError as exc:
            device = None
            device_problem = exc.message
        for step in DEMO_STEPS:
            yield from step(session, project.id)
        base = base_url.rstrip("/")
        yield f"web console: {base}/ (sign in as admin, password '{DEMO_PASSWORD}')"
        yield f"demo project: {DEMO_PROJECT} (id {project.id})"
        yield f"users (password '{DEMO_PASSWORD}'): " + ", ".join(u for u, _ in DEMO_USERS)
        if device is not None:
            url = device.collect_url(base)
            yield f"ODK Collect server URL: {url}"
            if qr:
                yield "or scan this QR code in ODK Collect (Add project > Scan QR code):"
                yield qr_terminal(collect_payload(url, project.name)).rstrip("\n")
        else:
            yield f"demo device: {device_problem}"
        yield f"or with a password: {base}/v1/projects/{project.id} (user coach / {DEMO_PASSWORD})"
    finally:
        session.close()


def publish_example_forms(session: Session, project_id: int) -> Iterator[str]:
    """Publish ``examples/forms/*.xlsx`` into the demo project (an unchanged example is left as it is)."""
    from server.config import PROJECT_ROOT
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
