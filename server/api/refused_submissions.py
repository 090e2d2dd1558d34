"""JSON API for refused submissions: the content a ``409 id_conflict`` ("kept for review") kept (managers)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from marshmallow import fields, validate

from server.api import downloads
from server.api.contract import ListOf, documented
from server.api.conventions import CamelSchema, StrictCamelSchema, json_list, link_next
from server.api.wire import load_query
from server.auth import require
from server.services import refused_submissions as svc
from server.store import db_session

bp = Blueprint("refused_submissions", __name__, url_prefix="/v1")

REFUSED = "/projects/<int:project_id>/refused-submissions"
# Managers decide about held content (the quarantine); analysts and coaches do not see it.
PERMISSION = "quarantine.manage"


class RefusedQuery(StrictCamelSchema):
    form_id = fields.String(load_default=None)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    after_id = fields.Integer(load_default=0, validate=validate.Range(min=0))


class RefusedOut(CamelSchema):
    id = fields.Integer()
    form_id = fields.String()
    instance_id = fields.String()
    reason = fields.String()
    xml_sha256 = fields.String()
    size = fields.Integer()
    source = fields.String()
    received_at = fields.DateTime()
    submitter = fields.String(allow_none=True)
    device = fields.String(allow_none=True)
    device_id = fields.String(allow_none=True)
    state = fields.String(metadata={"enum": ["held", "released", "discarded"]})
    decided_by = fields.String(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    released_instance_id = fields.String(allow_none=True)


class RefusedDetailOut(RefusedOut):
    xml = fields.String()
    stored_xml_sha256 = fields.String(allow_none=True)
    xml_url = fields.String()


@bp.get(REFUSED)
@documented(
    {200: ListOf(RefusedOut)},
    query=RefusedQuery,
    response_headers={
        "X-Total-Count": "How many refused payloads the filter keeps",
        "Link": 'The next page: <url>; rel="next" (absent on the last page)',
    },
)
def list_refused(project_id: int) -> Response:
    """List the project's refused payloads, oldest first (``?formId=``, ``?afterId=`` pages, ``?limit=``)."""
    require(PERMISSION, project_id)
    params = load_query(RefusedQuery())
    rows, total = svc.refused_page(
        db_session(), project_id, xml_form_id=params["form_id"], limit=params["limit"], after_id=params["after_id"]
    )
    response = json_list(rows, RefusedOut(), total)
    if len(rows) == params["limit"]:
        link_next(response, "refused_submissions.list_refused", {"afterId": str(rows[-1].id)}, project_id=project_id)
    return response


@bp.get(REFUSED + "/<int:refused_id>")
@documented({200: RefusedDetailOut})
def get_refused(project_id: int, refused_id: int) -> dict[str, Any]:
    """One refused payload with its XML as text and the hash of the XML stored under its instance id."""
    require(PERMISSION, project_id)
    return detail_json(project_id, svc.get_refused(db_session(), project_id, refused_id))


@bp.post(REFUSED + "/<int:refused_id>/release")
@documented({200: RefusedDetailOut}, errors=(409,))
def release_refused(project_id: int, refused_id: int) -> dict[str, Any]:
    """Store the payload as an edit of the submission it collided with (a repeat answers the same)."""
    principal = require(PERMISSION, project_id)
    return detail_json(project_id, svc.release(db_session(), project_id, refused_id, principal))


@bp.post(REFUSED + "/<int:refused_id>/discard")
@documented({200: RefusedDetailOut}, errors=(409,))
def discard_refused(project_id: int, refused_id: int) -> dict[str, Any]:
    """Keep the payload aside for good: never stored as data (a repeat answers the same)."""
    principal = require(PERMISSION, project_id)
    return detail_json(project_id, svc.discard(db_session(), project_id, refused_id, principal))


def detail_json(project_id: int, detail: svc.RefusedDetail) -> dict[str, Any]:
    """The wire form of one refused payload with its XML."""
    result: dict[str, Any] = RefusedOut().dump(detail.summary)
    result["xml"] = detail.xml.decode("utf-8", errors="replace")
    result["storedXmlSha256"] = detail.stored_xml_sha256
    result["xmlUrl"] = f"/v1/projects/{project_id}/refused-submissions/{detail.summary.id}/xml"
    return result


@bp.get(REFUSED + "/<int:refused_id>/xml")
@documented({200: "application/xml"})
def get_refused_xml(project_id: int, refused_id: int) -> Response:
    """The refused payload's XML, byte for byte as it arrived."""
    require(PERMISSION, project_id)
    detail = svc.get_refused(db_session(), project_id, refused_id)
    return downloads.attachment(detail.xml, "application/xml", f"refused-{refused_id}.xml")
