"""The HTTP answers for a form version's files, shared by the JSON API and the console."""

from __future__ import annotations

from flask import Response

SOURCE_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xls": "application/vnd.ms-excel",
    "xform": "text/xml; charset=utf-8",
}


def attachment(data: bytes, content_type: str, filename: str) -> Response:
    """A file to save, under ``filename``."""
    response = Response(data, content_type=content_type)
    response.headers.set("Content-Disposition", "attachment", filename=filename)
    return response


def version_source(filename: str, kind: str, data: bytes) -> Response:
    """The file a version was uploaded as (``kind``: xlsx, xls or xform)."""
    return attachment(data, SOURCE_TYPES.get(kind, "application/octet-stream"), filename)


def version_xform(data: bytes, xml_form_id: str, version: str) -> Response:
    """The XForm a version serves."""
    return attachment(data, "text/xml; charset=utf-8", f"{xml_form_id}-{version}.xml")
