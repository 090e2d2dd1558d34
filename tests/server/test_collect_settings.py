"""The settings QR code ODK Collect scans: what a phone decodes from it is what Collect expects.

Rules: the QR text is base64 of zlib-compressed JSON; ``general.server_url`` is the device's Collect URL;
``project.name`` is the project's name in full (Arabic and French included); the image decodes back to
the same text with a QR reader nobody here wrote (zxing-cpp).
"""

from __future__ import annotations

import base64
import json
import zlib

import pytest
import segno
import zxingcpp

from server.services.collect_settings import collect_payload, decode_settings, qr_svg, qr_terminal

URL = "http://192.0.2.10:5000/v1/key/Zx9_token/projects/3"


def _pixels(payload: str, scale: int = 4, border: int = 4) -> tuple[memoryview, int]:
    """Draw the QR matrix as an 8-bit grayscale image, as a phone's camera would see it."""
    matrix = segno.make(payload, error="m").matrix
    n = len(matrix)
    size = (n + 2 * border) * scale
    image = bytearray()
    for y in range(size):
        row = y // scale - border
        for x in range(size):
            col = x // scale - border
            dark = 0 <= row < n and 0 <= col < n and matrix[row][col]
            image.append(0 if dark else 255)
    return memoryview(bytes(image)).cast("B", (size, size)), size


@pytest.mark.parametrize(
    "project", ["Coopératives Safi", "تعاونيات آسفي", "Femmpact — Côte d'Ivoire"], ids=["fr", "ar", "punct"]
)
def test_payload_is_base64_zlib_json_with_the_server_url(project: str) -> None:
    payload = collect_payload(URL, project)
    settings = json.loads(zlib.decompress(base64.b64decode(payload)))
    assert settings["general"]["server_url"] == URL
    assert settings["project"]["name"] == project
    assert settings["admin"] == {}
    assert decode_settings(payload) == settings


def test_the_qr_image_decodes_to_the_payload() -> None:
    payload = collect_payload(URL, "تعاونيات آسفي")
    image, _ = _pixels(payload)
    found = zxingcpp.read_barcodes(image)
    assert [b.text for b in found] == [payload]


def test_svg_and_terminal_renderings() -> None:
    payload = collect_payload(URL, "Démo")
    svg = qr_svg(payload, title="QR")
    assert svg.lstrip().startswith("<svg") and "<title>QR</title>" in svg
    drawn = qr_terminal(payload)
    assert len(drawn.splitlines()) > 10
