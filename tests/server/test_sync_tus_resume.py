"""tus done right (issue 14 "Field networks"): fine offsets, HEAD tells what is durable, no waiting on dead PATCHes.

Rules:
- TU1 A PATCH cut at any byte keeps every byte that arrived: HEAD answers exactly that offset.
- TU2 A HEAD while a PATCH is still arriving answers the offset already durable (never more than arrived).
- TU3 A new PATCH from HEAD's offset supersedes one stuck on a dead connection instead of waiting for it;
  the dead one then ends with 409, never 500, and the blob is byte-identical.
- TU4 checksum extension: ``Upload-Checksum: sha256 <b64>`` per PATCH; a mismatch is 460 and counts nothing;
  a cut PATCH with a checksum counts nothing; other algorithms are 400.
- TU5 termination extension: DELETE gives the upload up (204), then HEAD/PATCH answer 410.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from server.services.uploads import PROGRESS_BYTES
from tests.conftest import Personas
from tests.server.live_server import tus_metadata

DATA = bytes(range(256)) * 2000  # 512,000 bytes: two durable steps and some


def _create(client: FlaskClient, personas: Personas, data: bytes = DATA) -> str:
    response = client.post(
        "/v1/uploads",
        headers={
            **personas.device.headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": tus_metadata(personas.project_id, hashlib.sha256(data).digest()),
        },
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return str(response.headers["Location"])


class Stream(io.BytesIO):
    """A PATCH body that runs ``during(sent)`` once, when the server has read ``at`` bytes; then ends at ``stop``."""

    def __init__(self, data: bytes, at: int, during: Callable[[int], None], stop: int | None = None) -> None:
        super().__init__(data[:stop] if stop is not None else data)
        self.at, self.during, self.done = at, during, False

    def read(self, size: int | None = -1) -> bytes:
        if not self.done and self.tell() >= self.at:
            self.done = True
            self.during(self.tell())
        return super().read(size)


def _patch(client: FlaskClient, personas: Personas, url: str, offset: int, body, declared: int, **headers: str):  # type: ignore[no-untyped-def]
    stream = body if isinstance(body, io.IOBase) else io.BytesIO(body)
    return client.patch(
        url,
        input_stream=stream,
        headers={
            **personas.device.headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            **headers,
        },
        environ_overrides={"CONTENT_LENGTH": str(declared)},
    )


def _offset(client: FlaskClient, personas: Personas, url: str) -> int:
    head = client.head(url, headers={**personas.device.headers, "Tus-Resumable": "1.0.0"})
    assert head.status_code == 200
    return int(head.headers["Upload-Offset"])


def _blob(app: Flask) -> bytes:
    from server.blobstore import BlobStore
    from server.store import get_store

    with app.app_context():
        return Path(BlobStore(get_store().storage_dir).path_for(hashlib.sha256(DATA).hexdigest())).read_bytes()


@pytest.mark.parametrize("cut", [1, 8_191, 65_537, 300_001, len(DATA) - 1], ids=lambda c: f"cut-at-{c}")
def test_a_cut_patch_keeps_every_byte_that_arrived(
    cut: int, app: Flask, client: FlaskClient, personas: Personas
) -> None:
    url = _create(client, personas)
    assert _patch(client, personas, url, 0, DATA[:cut], declared=len(DATA)).status_code == 400
    assert _offset(client, personas, url) == cut
    assert _patch(client, personas, url, cut, DATA[cut:], declared=len(DATA) - cut).status_code == 204
    assert _blob(app) == DATA


@pytest.fixture
def short_head_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A HEAD asked from inside a PATCH (same thread) cannot wait for it: keep its bounded wait short."""
    from server.services import uploads

    monkeypatch.setattr(uploads, "HEAD_WAIT", 0.1)


@pytest.mark.usefixtures("short_head_wait")
def test_head_during_a_patch_answers_what_is_durable(client: FlaskClient, personas: Personas) -> None:
    url = _create(client, personas)
    seen: list[tuple[int, int]] = []
    stream = Stream(DATA, PROGRESS_BYTES + 100_000, lambda sent: seen.append((sent, _offset(client, personas, url))))
    assert _patch(client, personas, url, 0, stream, declared=len(DATA)).status_code == 204
    [(sent, offset)] = seen
    assert PROGRESS_BYTES <= offset <= sent


@pytest.mark.usefixtures("short_head_wait")
def test_a_new_patch_supersedes_a_dead_one(app: Flask, client: FlaskClient, personas: Personas) -> None:
    url = _create(client, personas)
    answers: list[int] = []

    def phone_gives_up_and_resumes(_sent: int) -> None:
        # The phone's old connection is dead (the server does not know yet): HEAD, then PATCH from there.
        resume = _offset(client, personas, url)
        answers.append(_patch(client, personas, url, resume, DATA[resume:], declared=len(DATA) - resume).status_code)

    dead = Stream(DATA, PROGRESS_BYTES + 50_000, phone_gives_up_and_resumes, stop=PROGRESS_BYTES + 60_000)
    old = _patch(client, personas, url, 0, dead, declared=len(DATA))
    assert answers == [204]
    assert old.status_code == 409, old.get_data(as_text=True)
    assert _offset(client, personas, url) == len(DATA)
    assert _blob(app) == DATA


def _checksum(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm} {base64.b64encode(hashlib.sha256(data).digest()).decode()}"


@pytest.mark.parametrize(
    ("sent", "checksum", "status"),
    [
        (DATA[:1000], _checksum(DATA[:1000]), 204),
        (DATA[:1000], _checksum(DATA[:999]), 460),
        (DATA[:500], _checksum(DATA[:1000]), 400),  # cut: nothing of it counts
        (DATA[:1000], _checksum(DATA[:1000], "md5"), 400),
        (DATA[:1000], "sha256 not-base64!", 400),
    ],
    ids=["matches", "mismatch", "cut", "other-algorithm", "malformed"],
)
def test_checksum_extension(sent: bytes, checksum: str, status: int, client: FlaskClient, personas: Personas) -> None:
    url = _create(client, personas)
    response = _patch(client, personas, url, 0, sent, declared=1000, **{"Upload-Checksum": checksum})
    assert response.status_code == status, response.get_data(as_text=True)
    assert _offset(client, personas, url) == (1000 if status == 204 else 0)


def test_termination_extension(app: Flask, client: FlaskClient, personas: Personas) -> None:
    url = _create(client, personas)
    assert _patch(client, personas, url, 0, DATA[:5000], declared=5000).status_code == 204
    options = client.options("/v1/uploads")
    assert {"checksum", "termination"} <= set(options.headers["Tus-Extension"].split(","))
    assert options.headers["Tus-Checksum-Algorithm"] == "sha256"
    terminated = client.delete(url, headers={**personas.device.headers, "Tus-Resumable": "1.0.0"})
    assert terminated.status_code == 204
    assert client.head(url, headers=personas.device.headers).status_code == 410
    assert _patch(client, personas, url, 5000, DATA[5000:6000], declared=1000).status_code == 410
    with app.app_context():
        from server.store import get_store

        assert not (Path(get_store().storage_dir) / "uploads" / url.rsplit("/", 1)[1]).exists()
