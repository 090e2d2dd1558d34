"""The settings QR code ODK Collect scans to set up a project: its payload, as SVG and as terminal text.

Collect reads a QR code whose text is base64 of zlib-compressed JSON with three objects: ``general``
(``server_url`` and other general settings), ``admin`` and ``project`` (``name``, ``icon``, ``color``).
A device's Collect URL carries its token in the path (``/v1/key/<token>/projects/<id>``), so no
username or password goes in the payload. The token is never stored in clear: a payload can only be
built when a token is issued or reissued.
"""

from __future__ import annotations

import base64
import io
import json
import zlib
from typing import Any

import segno


def collect_settings(server_url: str, project_name: str) -> dict[str, Any]:
    """Return the settings a phone gets from the QR code for ``server_url`` (a device's Collect URL)."""
    return {
        "general": {
            "server_url": server_url,
            # A phone downloads exactly the forms it is given and sends finished forms on any network:
            # coaches come back within range rarely, and every chance to send counts.
            "form_update_mode": "match_exactly",
            "autosend": "wifi_and_cellular",
        },
        "admin": {},
        "project": {"name": project_name, "icon": project_name[:1].upper() or "F", "color": "#1f6f50"},
    }


def encode_settings(settings: dict[str, Any]) -> str:
    """Return the QR text Collect decodes: base64 of zlib-compressed compact JSON."""
    raw = json.dumps(settings, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(zlib.compress(raw)).decode("ascii")


def decode_settings(payload: str) -> dict[str, Any]:
    """Read a settings payload back (tests and support: what will the phone see?)."""
    data: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode(payload)).decode("utf-8"))
    return data


def collect_payload(server_url: str, project_name: str) -> str:
    """Return the QR text for a device's Collect URL and its project's name."""
    return encode_settings(collect_settings(server_url, project_name))


def qr_svg(payload: str, *, title: str = "") -> str:
    """Return the QR code as an inline SVG document (scales to any screen, no image file to serve)."""
    out = io.BytesIO()
    segno.make(payload, error="m").save(out, kind="svg", scale=4, border=4, xmldecl=False, title=title or None)
    return out.getvalue().decode("utf-8")


def qr_terminal(payload: str) -> str:
    """Return the QR code drawn with block characters, for a terminal that has no screen to show an image."""
    out = io.StringIO()
    segno.make(payload, error="m").terminal(out=out, compact=True)
    return out.getvalue()
