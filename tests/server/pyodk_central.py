"""A running Fieldsync (werkzeug, threaded, real HTTP) with an admin signed in through pyodk.

Shared by the pyodk test modules: ``running_central(forms, backend)`` builds a fresh database of the
given store, an admin who signs in by email, one project with ``forms`` (XForm bytes) published, and
a pyodk ``Client`` configured against it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import fresh_database_url

PASSWORD = "trois mots suffisent"
ADMIN_EMAIL = "amina@example.org"


@dataclass
class Central:
    """The running server and a pyodk client signed in to it."""

    url: str
    project_id: int
    client: Any


@contextmanager
def running_central(forms: Sequence[tuple[str, bytes]], backend: str = "sqlite") -> Iterator[Central]:
    """Serve Fieldsync over real HTTP on a fresh ``backend`` store with ``forms`` (id, XForm) published."""
    from pyodk.client import Client
    from werkzeug.serving import make_server

    from server import create_app
    from server.db.engine import make_engine
    from server.services import accounts
    from server.services import forms as forms_svc
    from server.store import get_store

    workdir = Path(tempfile.mkdtemp(prefix="fieldsync-pyodk-"))
    url, cleanup = fresh_database_url(backend, workdir)
    app = create_app(
        {
            "DATABASE_URL": url,
            "VAR_DIR": str(workdir / "var"),
            "STORAGE_DIR": str(workdir / "storage"),
            "SECRET_KEY": "pyodk-tests",
            "LOG_REQUESTS": False,
            "FORM_CONVERT_INLINE": True,
        }
    )
    with app.app_context():
        session = get_store().sessions()
        accounts.create_user(session, "amina", PASSWORD, is_admin=True, email=ADMIN_EMAIL, display_name="Amina")
        project = accounts.create_project(session, "Programme Souss-Massa — برنامج سوس ماسة")
        settings = forms_svc.UploadSettings(convert_inline=True)
        for form_id, xml in forms:
            forms_svc.create_form_version(
                session, project.id, xml, f"{form_id}.xml", publish=True, actor="user:1", settings=settings
            )
        project_id = project.id
        session.close()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    config = workdir / "pyodk_config.toml"
    config.write_text(
        f'[central]\nbase_url = "{base}"\nusername = "{ADMIN_EMAIL}"\npassword = "{PASSWORD}"\n'
        f"default_project_id = {project_id}\n",
        encoding="utf-8",
    )
    client = Client(config_path=str(config), cache_path=str(workdir / "pyodk_cache.toml"))
    try:
        yield Central(base, project_id, client)
    finally:
        client.session.close()
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["fieldsync.store"].engine.dispose()
        make_engine(url).dispose()
        cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
