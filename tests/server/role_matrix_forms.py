"""Role matrix rows for the forms JSON API and the OpenRosa form routes.

Decisions: managers and admins write forms; everyone in the project reads them through the JSON API
(analysts; coaches and devices too, because our own phone clients need the list and the schema);
the OpenRosa routes (formList, download, manifest, media, integrity) need ``submission.create``, so
analysts get 403 there (the formList holds only forms the caller may fill). Under
``/v1/key/<token>/`` the token in the path decides, whatever ``Authorization`` header is sent.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import Personas
from tests.server.fixtures_forms import COOP_XLSX, ENTREPRENEUR_XLSX, media_form, multipart, publish_form
from tests.server.role_matrix import PERSONAS, Case, statuses

READERS = ("admin", "manager", "coach", "analyst", "device")
WRITERS = ("admin", "manager")
FILLERS = ("admin", "manager", "coach", "device")
P = "/v1/projects/<int:project_id>"
K = "/v1/key/<token>/projects/<int:project_id>"
UPLOAD_BODY, UPLOAD_TYPE = multipart(ENTREPRENEUR_XLSX.read_bytes(), "entrepreneur_followup.xlsx")
ALL_OK = {p: 200 for p in PERSONAS}


def coop(app: Flask, personas: Personas) -> dict[str, Any]:
    """Publish the cooperative diagnostic."""
    publish_form(app, personas.project_id, COOP_XLSX)
    return {}


DRAFT_BODY = media_form("99", "Brouillon")


def coop_draft(app: Flask, personas: Personas) -> dict[str, Any]:
    """Upload the cooperative diagnostic as a draft."""
    publish_form(app, personas.project_id, COOP_XLSX, publish=False)
    return {}


def media_published(app: Flask, personas: Personas) -> dict[str, Any]:
    """Publish the media form and upload its logo."""
    from server.services import forms as svc
    from server.store import get_store

    publish_form(app, personas.project_id, media_form(), "media.xlsx")
    with app.app_context():
        session = get_store().sessions()
        svc.upload_attachment(session, personas.project_id, "media_test", "logo.png", [b"\x89PNG fake"], actor="test")
        session.close()
    return {}


def media_draft(app: Flask, personas: Personas) -> dict[str, Any]:
    """Publish the media form (its files not uploaded yet)."""
    publish_form(app, personas.project_id, media_form(), "media.xlsx")
    return {}


def entrepreneur(app: Flask, personas: Personas) -> dict[str, Any]:
    """Publish the entrepreneur follow-up (it updates the entrepreneurs entity list)."""
    publish_form(app, personas.project_id, ENTREPRENEUR_XLSX)
    return {}


def conversion_job(app: Flask, personas: Personas) -> dict[str, Any]:
    """A finished conversion job of the project (as an upload answered 202 leaves it)."""
    from server.db.base import utcnow
    from server.db.models.forms import FormConversionJob
    from server.store import get_store

    with app.app_context():
        session = get_store().sessions()
        job = FormConversionJob(
            project_id=personas.project_id,
            state="failed",
            filename="slow.xlsx",
            publish=True,
            created_by="test",
            created_at=utcnow(),
            finished_at=utcnow(),
            timeout_seconds=60.0,
            error={"status": 400, "code": "xlsform_invalid", "message": "bad", "details": {}},
        )
        session.add(job)
        session.commit()
        job_id = job.id
        session.close()
    return {"job": job_id}


F = "/v1/projects/{pid}/forms/coop_diagnostic"
KF = "/v1/key/{token}/projects/{pid}/forms/coop_diagnostic"

CASES = [
    Case(
        "POST",
        "/v1/projects/{pid}/forms?publish=true",
        f"{P}/forms",
        statuses(201, allowed=WRITERS),
        kwargs={"data": UPLOAD_BODY, "content_type": UPLOAD_TYPE},
    ),
    # Polling an upload's conversion: the permission of the upload.
    Case(
        "GET",
        "/v1/projects/{pid}/form-conversions/{job}",
        f"{P}/form-conversions/<int:job_id>",
        statuses(200, allowed=WRITERS),
        setup="conversion_job",
    ),
    Case("GET", "/v1/projects/{pid}/forms", f"{P}/forms", statuses(200, allowed=READERS), setup="coop"),
    Case("GET", F, f"{P}/forms/<xml_form_id>", statuses(200, allowed=READERS), setup="coop"),
    Case(
        "PATCH", F, f"{P}/forms/<xml_form_id>", statuses(200, allowed=WRITERS), json={"state": "closing"}, setup="coop"
    ),
    Case(
        "POST",
        f"{F}/draft/publish",
        f"{P}/forms/<xml_form_id>/draft/publish",
        statuses(200, allowed=WRITERS),
        setup="coop_draft",
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/forms/media_test/draft",
        f"{P}/forms/<xml_form_id>/draft",
        statuses(201, allowed=WRITERS),
        kwargs={
            "data": DRAFT_BODY,
            "content_type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        },
        setup="media_published",
    ),
    Case("GET", f"{F}/versions", f"{P}/forms/<xml_form_id>/versions", statuses(200, allowed=READERS), setup="coop"),
    Case("GET", f"{F}/schema", f"{P}/forms/<xml_form_id>/schema", statuses(200, allowed=READERS), setup="coop"),
    Case(
        "GET",
        f"{F}/versions/2026112901/xlsx",
        f"{P}/forms/<xml_form_id>/versions/<version>/xlsx",
        statuses(200, allowed=READERS),
        setup="coop",
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/forms/media_test/attachments",
        f"{P}/forms/<xml_form_id>/attachments",
        statuses(200, allowed=READERS),
        setup="media_draft",
    ),
    Case(
        "POST",
        "/v1/projects/{pid}/forms/media_test/draft/attachments/villages.csv",
        f"{P}/forms/<xml_form_id>/draft/attachments/<name>",
        statuses(200, allowed=WRITERS),
        kwargs={"data": b"name,label\nv1,Village 1\n", "content_type": "text/csv"},
        setup="media_draft",
    ),
    # OpenRosa, password accounts (bearer here; Digest and Basic are tested in test_openrosa_forms_auth.py).
    Case("GET", "/v1/projects/{pid}/formList", f"{P}/formList", statuses(200, allowed=FILLERS), setup="coop"),
    Case("GET", f"{F}.xml", f"{P}/forms/<xml_form_id>.xml", statuses(200, allowed=FILLERS), setup="coop"),
    Case(
        "GET",
        "/v1/projects/{pid}/forms/entrepreneur_followup/manifest",
        f"{P}/forms/<xml_form_id>/manifest",
        statuses(200, allowed=FILLERS),
        setup="entrepreneur",
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/forms/media_test/attachments/logo.png",
        f"{P}/forms/<xml_form_id>/attachments/<name>",
        statuses(200, allowed=FILLERS),
        setup="media_published",
    ),
    Case(
        "GET",
        "/v1/projects/{pid}/datasets/entrepreneurs/integrity?id=a,b",
        f"{P}/datasets/<list_name>/integrity",
        statuses(200, allowed=FILLERS),
        setup="entrepreneur",
    ),
    # OpenRosa, device token in the path: the token decides.
    Case("GET", "/v1/key/{token}/projects/{pid}/formList?deviceID=collect:abc", f"{K}/formList", ALL_OK, setup="coop"),
    Case("GET", f"{KF}.xml", f"{K}/forms/<xml_form_id>.xml", ALL_OK, setup="coop"),
    Case(
        "GET",
        "/v1/key/{token}/projects/{pid}/forms/entrepreneur_followup/manifest",
        f"{K}/forms/<xml_form_id>/manifest",
        ALL_OK,
        setup="entrepreneur",
    ),
    Case(
        "GET",
        "/v1/key/{token}/projects/{pid}/forms/media_test/attachments/logo.png",
        f"{K}/forms/<xml_form_id>/attachments/<name>",
        ALL_OK,
        setup="media_published",
    ),
    Case(
        "GET",
        "/v1/key/{token}/projects/{pid}/datasets/entrepreneurs/integrity?id=a",
        f"{K}/datasets/<list_name>/integrity",
        ALL_OK,
        setup="entrepreneur",
    ),
    # The device's token used on another project's URL.
    Case("GET", "/v1/key/{token}/projects/{other}/formList", f"{K}/formList", {p: 403 for p in PERSONAS}),
]
