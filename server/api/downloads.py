"""The HTTP answers for a form version's files and a submission's, shared by the JSON API and the console."""

from __future__ import annotations

import mimetypes
from urllib.parse import quote

from flask import Response, stream_with_context

from server.blobstore import BlobStore
from server.db.models.submissions import SubmissionAttachment

SOURCE_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xls": "application/vnd.ms-excel",
    "xform": "text/xml; charset=utf-8",
}


def content_disposition(filename: str) -> str:
    """``attachment`` with ``filename`` as RFC 6266 says: an ASCII fallback and the UTF-8 name in ``filename*``.

    A header must be Latin-1 on the wire: a name such as ``✿_suivi.xml`` written as it is made the
    WSGI server fail after the status line, and the client waited for an answer that never came.
    """
    fallback = filename.encode("ascii", "replace").decode("ascii").replace("?", "_").replace('"', "_")
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def attachment(data: bytes, content_type: str, filename: str) -> Response:
    """A file to save, under ``filename``."""
    response = Response(data, content_type=content_type)
    response.headers["Content-Disposition"] = content_disposition(filename)
    return response


def version_source(filename: str, kind: str, data: bytes) -> Response:
    """The file a version was uploaded as (``kind``: xlsx, xls or xform)."""
    return attachment(data, SOURCE_TYPES.get(kind, "application/octet-stream"), filename)


def version_xform(data: bytes, xml_form_id: str, version: str) -> Response:
    """The XForm a version serves."""
    return attachment(data, "text/xml; charset=utf-8", f"{xml_form_id}-{version}.xml")


# Pictures a browser may show in a page; anything else a phone sent is saved, never rendered (no HTML, no SVG).
INLINE_IMAGES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def submission_file(attachment: SubmissionAttachment, blobs: BlobStore, *, inline_images: bool = False) -> Response:
    """A present file of a submission, streamed from the blob store (``inline_images``: pictures shown in a page)."""
    assert attachment.blob_sha256 is not None
    name = attachment.name
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = Response(stream_with_context(blobs.iter_bytes(attachment.blob_sha256)), mimetype=mimetype)
    # Werkzeug quotes the name (and adds filename* for non-ASCII): names come from devices.
    disposition = "inline" if inline_images and mimetype in INLINE_IMAGES else "attachment"
    response.headers.set("Content-Disposition", disposition, filename=name)
    response.headers["Content-Length"] = str(blobs.size_of(attachment.blob_sha256))
    response.headers["ETag"] = f'"{attachment.blob_sha256}"'
    return response
