"""A fault-injecting transport over the Flask test client, and a canonical dump of the sync store.

The transport plays a coach's phone on a bad link (research §9): it drops a request before it reaches
the server, drops the response after the server committed, truncates the body (a cut connection or a
cut gzip stream), duplicates a request, and lets the caller re-split and reorder its outbox between
attempts. tus uploads can be cut mid-chunk and resumed from ``HEAD``. ``canonical_dump`` is the
comparison projection: no ids, timestamps or seqs, only what the store means.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

FAULTS = ("ok", "drop_request", "drop_response", "truncate", "truncate_gzip", "duplicate")


def envelope(device_id: str, batch_id: str, items: Sequence[dict[str, Any]]) -> bytes:
    """The JSON bytes of a push body (the same items give the same bytes, hence the same batch id)."""
    body = {"protocol": "fieldsync/2", "deviceId": device_id, "batchId": batch_id, "items": list(items)}
    return json.dumps(body, sort_keys=True).encode("utf-8")


def batch_id_for(device_id: str, items: Sequence[dict[str, Any]]) -> str:
    """A batch id derived from the content: a retry of the same bytes reuses it."""
    return hashlib.sha256(json.dumps([device_id, list(items)], sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class FaultyTransport:
    """Pushes and uploads through the test client, injecting the faults it is told to."""

    client: FlaskClient
    headers: dict[str, str]
    project_id: int
    log: list[tuple[str, int]] = field(default_factory=list)
    replays: list[tuple[bytes, bytes]] = field(default_factory=list)  # (first, replayed) response bytes

    @property
    def push_url(self) -> str:
        """The push endpoint of the project."""
        return f"/v1/projects/{self.project_id}/sync/push"

    def _post(self, body: bytes, batch_id: str, *, gzipped: bool = False, declared: int | None = None) -> Any:
        headers = {**self.headers, "Idempotency-Key": batch_id, "Content-Type": "application/json"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        # The test client measures the stream; a larger CONTENT_LENGTH is what a cut connection looks like.
        overrides = {"CONTENT_LENGTH": str(declared if declared is not None else len(body))}
        return self.client.post(
            self.push_url, input_stream=io.BytesIO(body), headers=headers, environ_overrides=overrides
        )

    def push(self, device_id: str, items: Sequence[dict[str, Any]], fault: str) -> dict[str, Any] | None:
        """One attempt: the parsed response when the client got an acknowledgement, else ``None``."""
        batch_id = batch_id_for(device_id, items)
        body = envelope(device_id, batch_id, items)
        if fault == "drop_request":
            self.log.append((fault, 0))
            return None
        if fault == "truncate":
            # The connection is cut: fewer bytes than Content-Length announced.
            cut = random.Random(batch_id).randrange(0, max(len(body), 1))
            response = self._post(body[:cut], batch_id, declared=len(body))
            self.log.append((fault, response.status_code))
            assert response.status_code == 400, response.get_data(as_text=True)
            assert response.get_json()["protocol"] == "fieldsync/2"
            return None
        if fault == "truncate_gzip":
            packed = gzip.compress(body)
            cut = random.Random(batch_id).randrange(1, max(len(packed), 2))
            response = self._post(packed[:cut], batch_id, gzipped=True)
            self.log.append((fault, response.status_code))
            assert response.status_code == 400, response.get_data(as_text=True)
            assert response.get_json()["details"]["problem"] == "incomplete_body"
            return None
        response = self._post(gzip.compress(body), batch_id, gzipped=True)
        self.log.append((fault, response.status_code))
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        if fault == "drop_response":
            return None  # committed on the server, lost on the way back
        if fault == "duplicate":
            again = self._post(body, batch_id)
            assert again.status_code == 200
            self.replays.append((response.get_data(), again.get_data()))
        parsed: dict[str, Any] = json.loads(response.get_data())
        assert parsed["protocol"] == "fieldsync/2"
        return parsed

    # -- tus ----------------------------------------------------------------------------------------

    def upload(self, data: bytes, rng: random.Random, *, faulty: bool) -> str:
        """Upload a blob with tus, cutting PATCHes mid-chunk and repeating some when ``faulty``."""
        sha = hashlib.sha256(data).hexdigest()
        b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
        meta = f"sha256 {b64(sha)},project {b64(str(self.project_id))}"
        created = self.client.post(
            "/v1/uploads",
            headers={
                **self.headers,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": meta,
                "Tus-Resumable": "1.0.0",
            },
        )
        assert created.status_code == 201, created.get_data(as_text=True)
        url = created.headers["Location"]
        offset = int(created.headers["Upload-Offset"])
        stale_offset = offset
        for _ in range(200):
            if offset >= len(data):
                break
            if faulty and stale_offset < offset and rng.random() < 0.3:
                # A repeated chunk from an old offset: the server answers 409 and the client asks HEAD.
                response = self._patch(url, stale_offset, data[stale_offset : stale_offset + 7])
                assert response.status_code == 409, response.status_code
            end = min(len(data), offset + (rng.randint(1, 64) if faulty else len(data)))
            chunk = data[offset:end]
            if faulty and rng.random() < 0.4 and len(chunk) > 1:
                cut = rng.randrange(1, len(chunk))
                response = self._patch(url, offset, chunk[:cut], declared=len(chunk))
                assert response.status_code == 400, response.status_code
            else:
                response = self._patch(url, offset, chunk)
                assert response.status_code == 204, response.get_data(as_text=True)
            stale_offset = offset
            head = self.client.head(url, headers={**self.headers, "Tus-Resumable": "1.0.0"})
            assert head.status_code == 200
            assert head.headers["Cache-Control"] == "no-store"
            offset = int(head.headers["Upload-Offset"])
        assert offset == len(data)
        return sha

    def _patch(self, url: str, offset: int, chunk: bytes, declared: int | None = None) -> Any:
        headers = {
            **self.headers,
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        }
        # The test client measures the stream; a larger CONTENT_LENGTH is what a cut connection looks like.
        overrides = {"CONTENT_LENGTH": str(declared if declared is not None else len(chunk))}
        return self.client.patch(url, input_stream=io.BytesIO(chunk), headers=headers, environ_overrides=overrides)


def canonical_dump(session: Session, project_id: int, blob_hashes: Sequence[str] = ()) -> dict[str, Any]:
    """What the store means for a project: submissions with their versions and files, entities with
    conflicts, ops, held items, blobs; no ids or times."""
    from server.db.models import Blob
    from server.db.models.sync import Entity, EntityList, EntityOpRow, HeldItem

    lists = {row.id: row.name for row in session.scalars(select(EntityList).where(EntityList.project_id == project_id))}
    entities = sorted(
        (
            lists[e.list_id],
            e.entity_id,
            e.label,
            json.dumps(e.properties, sort_keys=True),
            e.version,
            e.rev,
            e.conflict,
            json.dumps(e.conflict_fields, sort_keys=True),
            e.deleted,
        )
        for e in session.scalars(select(Entity).where(Entity.list_id.in_(list(lists) or [-1])))
    )
    ops = sorted(
        (
            lists[o.list_id],
            o.entity_id,
            o.op_id,
            o.writer,
            o.seq,
            json.dumps(o.fields, sort_keys=True),
            json.dumps(o.context, sort_keys=True),
            o.hlc,
            o.fingerprint,
        )
        for o in session.scalars(select(EntityOpRow).where(EntityOpRow.list_id.in_(list(lists) or [-1])))
    )
    held = sorted(
        (h.fingerprint, h.kind, h.item_key, h.outcome, h.reason, h.status)
        for h in session.scalars(select(HeldItem).where(HeldItem.project_id == project_id))
    )
    blobs = sorted(
        (b.sha256, b.size) for b in session.scalars(select(Blob).where(Blob.sha256.in_(list(blob_hashes) or ["-"])))
    )
    return {**_submissions_dump(session, project_id), "entities": entities, "ops": ops, "held": held, "blobs": blobs}


def _submissions_dump(session: Session, project_id: int) -> dict[str, Any]:
    """Submissions (chains), their versions and their files, by instance id: no ids or times."""
    from server.db.models.forms import Form
    from server.db.models.submissions import Submission, SubmissionAttachment, SubmissionVersion

    form_ids = {row.id: row.xml_form_id for row in session.scalars(select(Form).where(Form.project_id == project_id))}
    chains = {s.id: s for s in session.scalars(select(Submission).where(Submission.project_id == project_id))}
    submissions = sorted(
        (
            form_ids[s.form_id],
            s.instance_id,
            s.current_instance_id,
            s.edits,
            s.review_state,
            s.attachments_expected,
            s.attachments_present,
            s.deleted_at is None,
        )
        for s in chains.values()
    )
    versions = {
        v.id: v for v in session.scalars(select(SubmissionVersion).where(SubmissionVersion.project_id == project_id))
    }
    version_rows = sorted(
        (
            chains[v.submission_id].instance_id,
            v.instance_id,
            v.deprecated_id or "",
            v.form_version,
            v.xml_sha256,
            json.dumps(v.record, sort_keys=True),
            v.source,
        )
        for v in versions.values()
    )
    files = sorted(
        (versions[a.version_id].instance_id, a.name, a.blob_sha256 or "", a.declared_sha256 or "")
        for a in session.scalars(
            select(SubmissionAttachment).where(SubmissionAttachment.version_id.in_(list(versions) or [-1]))
        )
    )
    return {"submissions": submissions, "versions": version_rows, "files": files}
