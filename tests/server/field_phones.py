"""Two phones that upload a coach's week over a faulty link: ODK Collect's way and Fieldsync's protocol.

- :class:`CollectPhone` does what Collect does (see ``collect_client.py``): HEAD, then the POSTs of the
  advertised split on a kept-alive connection; any failure (a cut, a non-201 answer) and the whole
  submission is sent again from its first POST.
- :class:`FieldsyncPhone` asks ``blobs/missing``, uploads each missing photo with tus (on a cut: HEAD,
  then PATCH from the offset the server has), and pushes the submissions in batches (a cut push is sent
  again; the batch id makes the resend idempotent).

Both count every answer, so a test can assert there was no 5xx. Used by tests and by the bench.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.server.collect_client import accept_content_length, split_posts

RESUME_DELAY = 0.1  # seconds between a cut PATCH and the HEAD that resumes it
MAX_TRIES = 400  # per request (or per submission, for Collect): the link always lets some bytes through


class LinkDown(Exception):
    """The request did not get an answer (the link cut it)."""


@dataclass
class Phone:
    """An HTTP/1.1 client on one kept-alive connection to ``host:port`` (reopened after a cut or a close)."""

    host: str
    port: int
    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0
    _conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        """One request; its (status, headers, body), or :class:`LinkDown`."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            self._conn.request(method, path, body=body or None, headers=headers or {})
            response = self._conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.failures += 1
            self._conn.close()
            self._conn = None
            raise LinkDown() from error
        self.statuses[response.status] += 1
        if response.will_close:
            self._conn.close()
            self._conn = None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def server_errors(self) -> int:
        """How many answers were 5xx."""
        return sum(count for status, count in self.statuses.items() if status >= 500)


def _multipart(parts: list[tuple[str, str, bytes, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for name, filename, content, content_type in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


@dataclass
class CollectPhone(Phone):
    """ODK Collect's upload of one submission at a time (see the module docstring)."""

    prefix: str = ""
    tries: int = 0

    def send(self, xml: bytes, photos: list[tuple[str, bytes]]) -> None:
        """Send one submission until the server has all of it (Collect's "send" pressed again and again)."""
        for _ in range(MAX_TRIES):
            self.tries += 1
            if self._try(xml, photos):
                return
        raise AssertionError(f"Collect gave up after {MAX_TRIES} tries")

    def _try(self, xml: bytes, photos: list[tuple[str, bytes]]) -> bool:
        path = f"{self.prefix}/submission?deviceID=collect%3Afield"
        headers = {"X-OpenRosa-Version": "1.0"}
        try:
            status, head, _ = self.request("HEAD", path, headers=headers)
            if status != 204:
                return False
            limit = accept_content_length(head.get("x-openrosa-accept-content-length"))
            for post in split_posts(xml, photos, limit):
                parts = [("xml_submission_file", "submission.xml", xml, "text/xml")]
                parts += [(name, name, content, "image/jpeg") for name, content in post.files]
                if post.incomplete:
                    parts.append(("*isIncomplete*", "", b"yes", "text/plain"))
                body, content_type = _multipart(parts)
                status, _, _ = self.request("POST", path, body, {**headers, "Content-Type": content_type})
                if status not in (201, 202):
                    return False
        except LinkDown:
            return False
        return True


@dataclass
class FieldsyncPhone(Phone):
    """Fieldsync's own client: blobs/missing, tus uploads resumed from HEAD, pushes in batches."""

    token: str = ""
    project_id: int = 0
    batch_size: int = 10
    results: Counter[str] = field(default_factory=Counter)

    def _auth(self, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **headers}

    def _retry(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        for _ in range(MAX_TRIES):
            try:
                return self.request(method, path, body, headers)
            except LinkDown:
                continue
        raise AssertionError(f"{method} {path}: no answer after {MAX_TRIES} tries")

    def sync(self, submissions: list[tuple[str, bytes, list[tuple[str, bytes]]]]) -> None:
        """Upload every photo the server lacks, then push every submission."""
        photos = {hashlib.sha256(content).hexdigest(): content for _, _, files in submissions for _, content in files}
        status, _, data = self._retry(
            "POST",
            f"/v1/projects/{self.project_id}/blobs/missing",
            json.dumps({"sha256": list(photos)}).encode(),
            self._auth(**{"Content-Type": "application/json"}),
        )
        assert status == 200, data
        for sha in json.loads(data)["missing"]:
            self._upload(sha, photos[sha])
        for start in range(0, len(submissions), self.batch_size):
            self._push(submissions[start : start + self.batch_size])

    def _upload(self, sha: str, content: bytes) -> None:
        tus = {"Tus-Resumable": "1.0.0"}
        metadata = (
            f"sha256 {base64.b64encode(bytes.fromhex(sha)).decode()},"
            f"project {base64.b64encode(str(self.project_id).encode()).decode()}"
        )
        status, head, data = self._retry(
            "POST",
            "/v1/uploads",
            headers=self._auth(**tus, **{"Upload-Length": str(len(content)), "Upload-Metadata": metadata}),
        )
        assert status == 201, data
        location, offset = head["location"], int(head["upload-offset"])
        for _ in range(MAX_TRIES):
            if offset >= len(content):
                return
            headers = self._auth(
                **tus, **{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
            )
            try:
                status, head, data = self.request("PATCH", location, content[offset:], headers)
            except LinkDown:
                status = 0
            if status == 204:
                offset = int(head["upload-offset"])
                continue
            assert status in (0, 409), (status, data)
            if status == 0:
                # As tus clients do (retry delays), and as a phone does while its link comes back: the
                # server is given a moment to write down what the cut PATCH delivered.
                time.sleep(RESUME_DELAY)
            status, head, _ = self._retry("HEAD", location, headers=self._auth(**tus))
            assert status == 200
            offset = int(head["upload-offset"])
        raise AssertionError(f"upload of {sha} did not finish")

    def _push(self, batch: list[tuple[str, bytes, list[tuple[str, bytes]]]]) -> None:
        items: list[dict[str, Any]] = [
            {
                "type": "submission",
                "instanceId": instance_id,
                "formId": "photo_visit",
                "formVersion": "1",
                "data": xml.decode(),
                "attachments": [
                    {"name": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
                    for name, content in files
                ],
            }
            for instance_id, xml, files in batch
        ]
        batch_id = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:32]
        body = json.dumps(
            {"protocol": "fieldsync/2", "deviceId": "fieldsync-phone", "batchId": batch_id, "items": items}
        ).encode()
        headers = self._auth(**{"Content-Type": "application/json", "Idempotency-Key": batch_id})
        for _ in range(MAX_TRIES):
            status, _, data = self._retry("POST", f"/v1/projects/{self.project_id}/sync/push", body, headers)
            if status == 200:
                for result in json.loads(data)["results"]:
                    self.results[result["status"]] += 1
                return
            assert status in (400, 409), (status, data)  # a cut body, a batch still in progress
        raise AssertionError("push did not go through")
