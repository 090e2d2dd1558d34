"""The OData 4.0 door: a form's submissions feed and an entity list's feed, for Excel, Power BI, R and pyodk.

A thin adapter over ``server.services.odata``: it reads the query string, calls one service, and writes
the answer with OData's headers. Every route answers HTTP Basic directly (no redirect: Microsoft's
Mashup client drops ``Authorization`` on a redirect) and a ``401`` carries a Basic challenge, which is
what makes Excel and Power BI ask for a user name and password.
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, request, stream_with_context
from marshmallow import Schema, fields

from server.api.contract import documented
from server.auth import require
from server.errors import ApiError, unauthenticated
from server.services import odata as svc
from server.store import db_session

bp = Blueprint("odata", __name__, url_prefix="/v1")

_FORM_SVC = "/projects/<int:project_id>/forms/<xml_form_id>.svc"
_DATASET_SVC = "/projects/<int:project_id>/datasets/<name>.svc"
JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"
_ANY_JSON = {"type": "object", "description": "An OData 4.0 JSON document (minimal metadata)."}
REALM = 'Basic realm="Fieldsync", charset="UTF-8"'


class FeedQuery(Schema):
    """OData's system query options, as the feed reads them (documentation of the query string)."""

    top = fields.Integer(data_key="$top", metadata={"description": "At most this many rows."})
    skip = fields.Integer(data_key="$skip", metadata={"description": "Leave out the first rows."})
    count = fields.Boolean(data_key="$count", metadata={"description": "Add @odata.count, the rows that match."})
    select = fields.String(data_key="$select", metadata={"description": "Comma-separated member paths."})
    expand = fields.String(data_key="$expand", metadata={"description": "`*`: repeats inline."})
    filter = fields.String(
        data_key="$filter",
        metadata={
            "description": "eq ne lt le gt ge and or not, year() .. second(), now(); on __system and form fields."
        },
    )
    orderby = fields.String(data_key="$orderby", metadata={"description": "__system/submissionDate or __id, asc|desc."})
    skiptoken = fields.String(data_key="$skiptoken", metadata={"description": "From @odata.nextLink."})
    wkt = fields.Boolean(data_key="$wkt", metadata={"description": "Geometry as Well-Known Text."})


def _require(permission: str, project_id: int) -> None:
    try:
        require(permission, project_id)
    except ApiError as exc:
        if exc.status == 401:
            raise unauthenticated(exc.message, challenge=REALM) from None
        raise


def _base(suffix: str = "") -> str:
    return request.base_url.rstrip("/").split(".svc")[0] + ".svc" + suffix


def _odata(body: bytes | str, mimetype: str, etag: bool = True) -> Response:
    response = Response(body, content_type=mimetype)
    response.headers["OData-Version"] = "4.0"
    if etag:
        response.add_etag()
        response.make_conditional(request)
    return response


@bp.get(_FORM_SVC)
@documented({200: {"application/json": _ANY_JSON}}, notes="The OData service document of a form's submissions.")
def form_service(project_id: int, xml_form_id: str) -> Response:
    """The service document: the submissions table and one table per repeat."""
    _require("submission.read", project_id)
    doc = svc.service(db_session(), project_id, xml_form_id, _base())
    return _odata(orjson.dumps(doc), JSON_TYPE)


@bp.get(f"{_FORM_SVC}/$metadata")
@documented({200: "application/xml"}, notes="EDMX (CSDL XML): one entity type per repeat, `__system`.")
def form_metadata(project_id: int, xml_form_id: str) -> Response:
    """The EDMX document of the form's feed."""
    _require("submission.read", project_id)
    return _odata(svc.metadata(db_session(), project_id, xml_form_id), XML_TYPE)


@bp.get(f"{_FORM_SVC}/<path:resource>")
@documented(
    {200: {"application/json": _ANY_JSON}},
    query=FeedQuery,
    notes="`Submissions`, `Submissions('<id>')`, `Submissions('<id>')/<repeat>`, `Submissions.<repeat path>`.",
)
def form_feed(project_id: int, xml_form_id: str, resource: str) -> Response:
    """Rows of one table of the form's feed (streamed), or one submission (with an ETag)."""
    _require("submission.read", project_id)
    max_page = _max_page_size()
    args = request.args.to_dict()
    answer = svc.open_feed(db_session(), project_id, xml_form_id, resource, args, _base(), max_page)
    return _answer(answer, max_page)


def _answer(answer: svc.FeedAnswer, max_page: int | None) -> Response:
    """A whole answer with its ETag, or a streamed one (no ETag: it is not known before the end)."""
    if answer.body is not None:
        return _odata(answer.body, "text/plain; charset=utf-8" if answer.text else JSON_TYPE)
    assert answer.chunks is not None
    response = _odata(stream_with_context(answer.chunks), JSON_TYPE, etag=False)  # type: ignore[arg-type]
    response.headers["Cache-Control"] = "no-store"
    if max_page is not None:
        response.headers["Preference-Applied"] = f"odata.maxpagesize={max_page}"
    return response


def _max_page_size() -> int | None:
    """The ``odata.maxpagesize`` preference of the ``Prefer`` header, if any (bad values are ignored)."""
    for preference in request.headers.get("Prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, min(int(value.strip()), 1_000_000))
    return None


@bp.get(_DATASET_SVC)
@documented({200: {"application/json": _ANY_JSON}}, notes="The OData service document of an entity list.")
def dataset_service(project_id: int, name: str) -> Response:
    """The service document of an entity list: ``Entities``."""
    _require("entity.read", project_id)
    return _odata(orjson.dumps(svc.entity_service(db_session(), project_id, name, _base())), JSON_TYPE)


@bp.get(f"{_DATASET_SVC}/$metadata")
@documented({200: "application/xml"}, notes="EDMX of an entity list: `Entities` with `__system`.")
def dataset_metadata(project_id: int, name: str) -> Response:
    """The EDMX document of an entity list's feed."""
    _require("entity.read", project_id)
    return _odata(svc.entity_metadata(db_session(), project_id, name), XML_TYPE)


@bp.get(f"{_DATASET_SVC}/<path:resource>")
@documented({200: {"application/json": _ANY_JSON}}, query=FeedQuery, notes="`Entities` and `Entities/$count`.")
def dataset_feed(project_id: int, name: str, resource: str) -> Response:
    """The entities of a list as an OData feed (streamed)."""
    _require("entity.read", project_id)
    max_page = _max_page_size()
    answer = svc.open_entities_feed(db_session(), project_id, name, resource, request.args.to_dict(), _base(), max_page)
    return _answer(answer, max_page)
