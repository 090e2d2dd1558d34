"""Office relays, office side: one round of the relay between the office's store and the national server.

``relay_round`` does, for one relayed project: mirror the upstream's published forms that the office
lacks; queue any stored version the outbox does not hold yet; resend every batch that was given a key
but not answered (a crash or cut after the key was committed: the national server replays or finishes
it, so nothing is stored twice); then make new batches, each one device's versions in outbox order,
commit their key, upload the photos upstream lacks (tus, resumed from the offset the upstream states
and the one recorded in ``relay_uploads``), and push. Only an answer marks rows sent. The link's state
(last contact, last error) is written at the end of the round.

Each step owns a short transaction; the HTTP calls happen between them, never inside one.

The relay speaks ``fieldsync/2`` (camelCase). The outbox stores no body: a batch's body is built from the
stored rows at every send, so a key committed before the upgrade is sent in the new shape. If the national
server had already stored that key under the old shape's bytes it answers ``422 idempotency_key_reused``;
the relay then resends the body as a fieldsync/1 server built it (``sync.batches.item_to_protocol_1``),
the same bytes, whose stored reply the national server replays (``sync_push``'s fieldsync/1 resend).
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.base import utcnow
from server.db.models import AccessToken, Blob, User
from server.db.models.forms import Form, FormVersion
from server.db.models.relays import RelayLink, RelayUpload
from server.db.models.submissions import SubmissionAttachment, SubmissionVersion
from server.db.models.sync import EntityList, EntityOpRow
from server.db.queries import relays as q
from server.db.transaction import transaction
from server.services.submissions import blob_store
from sync.batches import PROTOCOL, PROTOCOL_1, item_to_protocol_1

log = logging.getLogger("fieldsync.relay")

BATCH_ITEMS = 20


class LinkError(Exception):
    """The upstream did not answer usefully (cut, timeout, 5xx, a captive portal's page)."""


@dataclass
class Uplink:
    """The HTTP side of the relay: the upstream's URL, the relay's token, a timeout and the tus chunk size."""

    base_url: str
    token: str
    timeout: float = 30.0
    chunk_bytes: int = 64 * 1024
    http: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request to the upstream; :class:`LinkError` when the link fails or the server errs."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        try:
            response = self.http.request(
                method, self.base_url.rstrip("/") + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            self.http.close()
            raise LinkError(f"{method} {path}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise LinkError(f"{method} {path}: {response.status_code}")
        return response


# ---------------------------------------------------------------------------------------------------
# Link set-up and state


def ensure_link(session: Session, project_id: int, upstream_url: str, remote_project_id: int) -> None:
    """Record that a local project is relayed to a remote one (the outbox fills from now on)."""
    with transaction(session):
        link = session.get(RelayLink, project_id)
        if link is None:
            session.add(
                RelayLink(project_id=project_id, upstream_url=upstream_url, remote_project_id=remote_project_id)
            )
        else:
            link.upstream_url, link.remote_project_id = upstream_url, remote_project_id


def note_contact(session: Session, project_id: int, error: str | None) -> None:
    """Write the outcome of a round: the last contact, or the last error."""
    with transaction(session):
        link = session.get(RelayLink, project_id)
        if link is None:
            return
        if error is None:
            link.last_contact_at = utcnow()
        else:
            link.last_error, link.last_error_at = error[:1000], utcnow()


@dataclass(frozen=True)
class LinkState:
    """What the console and ``/metrics`` show of a link."""

    project_id: int
    upstream_url: str
    remote_project_id: int
    queued: int
    last_contact_at: Any
    last_error: str | None
    last_error_at: Any
    refused: dict[str, int] = field(default_factory=dict)  # upstream answers "rejected"/"quarantined"

    @property
    def up(self) -> bool:
        """Whether the last round reached the upstream."""
        if self.last_contact_at is None:
            return False
        return self.last_error_at is None or self.last_contact_at >= self.last_error_at


def link_states(session: Session) -> list[LinkState]:
    """Every relayed project's state."""
    with transaction(session):
        return [
            LinkState(
                link.project_id,
                link.upstream_url,
                link.remote_project_id,
                q.pending_count(session, link.project_id),
                link.last_contact_at,
                link.last_error,
                link.last_error_at,
                q.refused_counts(session, link.project_id),
            )
            for link in q.list_links(session)
        ]


# ---------------------------------------------------------------------------------------------------
# One round


@dataclass
class RoundReport:
    """What a round did (for logs and tests)."""

    pushed: int = 0
    uploaded_bytes: int = 0
    forms: int = 0
    entity_ops: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


def relay_round(session: Session, project_id: int, uplink: Uplink) -> RoundReport:
    """One round for one project; raises :class:`LinkError` when the link fails (the next round resumes)."""
    link = q.get_link(session, project_id)
    assert link is not None, "ensure_link first"
    remote = link.remote_project_id
    session.rollback()
    report = RoundReport()
    report.forms = mirror_forms(session, project_id, remote, uplink)
    report.entity_ops = pull_entities(session, project_id, remote, uplink)
    with transaction(session):
        q.backfill_outbox(session, project_id, utcnow())
        q.backfill_entity_outbox(session, project_id, utcnow())
    with transaction(session):
        keys = q.open_batch_keys(session, project_id)
    for key in keys:
        _send_batch(session, project_id, remote, key, uplink, report, resent=True)
    while True:
        key = _new_batch(session, project_id)
        if key is None:
            break
        _send_batch(session, project_id, remote, key, uplink, report)
    return report


def _new_batch(session: Session, project_id: int) -> str | None:
    """Give the oldest unbatched rows of one device a batch key and commit it before anything is sent."""
    with transaction(session):
        rows = q.unbatched(session, project_id, BATCH_ITEMS * 5)
        if not rows:
            return None
        devices = dict(
            session.execute(
                select(SubmissionVersion.id, SubmissionVersion.device_id).where(
                    SubmissionVersion.id.in_([v for _, v, _ in rows if v is not None])
                )
            ).all()
        )
        writers = dict(
            session.execute(
                select(EntityOpRow.id, EntityOpRow.writer).where(
                    EntityOpRow.id.in_([e for _, _, e in rows if e is not None])
                )
            ).all()
        )

        def device_of(version_id: int | None, op_row_id: int | None) -> str | None:
            # An entity item's writer must be the batch's device upstream (else foreign_dot).
            return devices.get(version_id) if version_id is not None else writers.get(op_row_id)

        first_device = device_of(rows[0][1], rows[0][2])
        chosen = [oid for oid, vid, eid in rows if device_of(vid, eid) == first_device][:BATCH_ITEMS]
        key = uuid.uuid4().hex
        q.assign_batch(session, chosen, key)
    return key


def _origin(session: Session, version: SubmissionVersion) -> str | None:
    if version.submitter_id is not None:
        user = session.get(User, version.submitter_id)
        return f"user:{user.username}" if user is not None else None
    if version.device_token_id is not None:
        token = session.get(AccessToken, version.device_token_id)
        return f"device:{token.name}" if token is not None else None
    return None


@dataclass(frozen=True)
class _Photo:
    sha256: str
    size: int


def _batch_body(session: Session, key: str, *, protocol_1: bool = False) -> tuple[bytes, str, list[int], list[_Photo]]:
    """The push body of a batch (the same bytes at every resend), its device, rows and photos.

    ``protocol_1``: the body as a fieldsync/1 relay built it for the same rows (a key sent before the upgrade).
    """
    with transaction(session):
        rows = q.batch_rows(session, key)
        versions = {
            v.id: v
            for v in session.scalars(
                select(SubmissionVersion).where(SubmissionVersion.id.in_([v for _, v, _ in rows if v is not None]))
            )
        }
        ops = {
            op.id: (op, list_name)
            for op, list_name in session.execute(
                select(EntityOpRow, EntityList.name)
                .join(EntityList, EntityList.id == EntityOpRow.list_id)
                .where(EntityOpRow.id.in_([e for _, _, e in rows if e is not None]))
            ).all()
        }
        attachments: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
        photos: dict[str, _Photo] = {}
        found = session.execute(
            select(SubmissionAttachment.version_id, SubmissionAttachment.name, Blob.sha256, Blob.size)
            .join(Blob, Blob.sha256 == SubmissionAttachment.blob_sha256)
            .where(SubmissionAttachment.version_id.in_(list(versions)))
            .order_by(SubmissionAttachment.version_id, SubmissionAttachment.name)
        ).all()
        for version_id, name, sha, size in found:
            attachments[version_id].append((name, sha, size))
            photos[sha] = _Photo(sha, int(size))
        # What each entity update of these submissions had seen here, in dots (sync.entities.RelayedBase):
        # the phone's baseVersion is an office number, which the national server would read as its own.
        entity_ops: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for op in session.scalars(
            select(EntityOpRow)
            .where(EntityOpRow.submission_version_id.in_(list(versions)))
            .order_by(EntityOpRow.submission_version_id, EntityOpRow.op_id)
        ):
            assert op.submission_version_id is not None
            entity_ops[op.submission_version_id].append(
                {"opId": op.op_id, "context": op.context, "unknownBase": op.unknown_base}
            )
        items = []
        device = "relay"
        for _, version_id, op_row_id in rows:
            if version_id is None:
                assert op_row_id is not None
                op, list_name = ops[op_row_id]
                device = op.writer
                items.append(_entity_item(op, list_name))
                continue
            v = versions[version_id]
            device = v.device_id or device
            item: dict[str, Any] = {
                "type": "submission",
                "instanceId": v.instance_id,
                "formId": _xml_form_id(session, v.form_id),
                "formVersion": v.form_version,
                "data": v.xml.decode("utf-8"),
                "attachments": [{"name": n, "sha256": s, "size": z} for n, s, z in attachments[version_id]],
                "origin": {"deviceId": v.device_id, "submitter": _origin(session, v)},
            }
            if v.deprecated_id:
                item["deprecatedId"] = v.deprecated_id
            if entity_ops[version_id]:
                item["entityOps"] = entity_ops[version_id]
            items.append(item)
        if protocol_1:
            old = [item_to_protocol_1(item) for item in items]
            body = {"protocol": PROTOCOL_1, "device_id": device, "batch_id": key, "items": old}
        else:
            body = {"protocol": PROTOCOL, "deviceId": device, "batchId": key, "items": items}
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return data, device, [oid for oid, _, _ in rows], list(photos.values())


def _entity_item(op: EntityOpRow, list_name: str) -> dict[str, Any]:
    """A JSON entity change as the office stored it, with the context it had there (no ``baseRev``: a rev
    names a set of ops the upstream may never have materialised; the context names them one by one)."""
    item: dict[str, Any] = {
        "type": "entity",
        "opId": op.op_id,
        "dot": {"w": op.writer, "s": op.seq},
        "entity": {"list": list_name, "id": op.entity_id},
        "fields": dict(op.fields),
        "hlc": op.hlc,
        "context": op.context,
        "unknownBase": op.unknown_base,
    }
    if op.source and op.source != op.op_id:
        item["sourceSubmission"] = op.source
    return item


def _xml_form_id(session: Session, form_pk: int) -> str:
    form = session.get(Form, form_pk)
    assert form is not None
    return form.xml_form_id


def _send_batch(
    session: Session,
    project_id: int,
    remote: int,
    key: str,
    uplink: Uplink,
    report: RoundReport,
    *,
    resent: bool = False,
) -> None:
    """Send one batch (its photos first); ``resent``: a key committed before this round, maybe before the upgrade."""
    body, _, outbox_ids, photos = _batch_body(session, key)
    if not outbox_ids:
        return
    if photos:
        response = uplink.call(
            "POST",
            f"/v1/projects/{remote}/blobs/missing",
            json={"sha256": [p.sha256 for p in photos]},
        )
        _expect(response, 200)
        missing = set(response.json()["missing"])
        for photo in photos:
            if photo.sha256 in missing:
                report.uploaded_bytes += upload_blob(session, project_id, remote, photo.sha256, photo.size, uplink)
    response = _push(uplink, remote, key, body)
    protocols = (PROTOCOL,)
    if resent and response.status_code == 422 and _problem(response) == "idempotency_key_reused":
        # The upstream stored this key under other bytes: the fieldsync/1 body this office sent before
        # the upgrade. The same rows give the same bytes in that shape, and the upstream replays its reply.
        response = _push(uplink, remote, key, _batch_body(session, key, protocol_1=True)[0])
        protocols = (PROTOCOL, PROTOCOL_1)
    if response.status_code == 409:
        raise LinkError(f"batch {key} still in progress upstream")
    _expect(response, 200, protocols)
    results = response.json()["results"]
    with transaction(session):
        now = utcnow()
        for outbox_id, result in zip(outbox_ids, results, strict=True):
            q.mark_sent(session, outbox_id, str(result.get("status")), now)
            report.statuses[str(result.get("status"))] = report.statuses.get(str(result.get("status")), 0) + 1
    report.pushed += len(outbox_ids)


def _push(uplink: Uplink, remote: int, key: str, body: bytes) -> requests.Response:
    return uplink.call(
        "POST",
        f"/v1/projects/{remote}/sync/push",
        data=gzip.compress(body, mtime=0),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip", "Idempotency-Key": key},
    )


def _problem(response: requests.Response) -> str | None:
    """The machine name of an upstream error (``details.problem``), if the answer says one."""
    try:
        body = response.json()
    except ValueError:
        return None
    details = body.get("details") if isinstance(body, dict) else None
    problem = details.get("problem") if isinstance(details, dict) else None
    return problem if isinstance(problem, str) else None


def _expect(response: requests.Response, status: int, protocols: tuple[str, ...] = (PROTOCOL,)) -> None:
    if response.status_code != status:
        raise LinkError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:200]}")
    if "json" not in response.headers.get("Content-Type", ""):
        return
    try:
        body = response.json()
    except ValueError:
        raise LinkError(f"{response.request.method} {response.url}: the answer is not complete JSON") from None
    if isinstance(body, dict) and body.get("protocol", PROTOCOL) not in protocols:
        raise LinkError("the answer is not Fieldsync's")


# ---------------------------------------------------------------------------------------------------
# Photos by tus


def upload_blob(session: Session, project_id: int, remote: int, sha256: str, size: int, uplink: Uplink) -> int:
    """Send one blob upstream by tus, resuming a recorded upload; the bytes sent."""
    tus = {"Tus-Resumable": "1.0.0"}
    with transaction(session):
        row = q.get_upload(session, project_id, sha256)
        location = row.location if row is not None and row.done_at is None else None
    offset = 0
    if location is not None:
        head = uplink.call("HEAD", location, headers=tus)
        if head.status_code == 200:
            offset = int(head.headers.get("Upload-Offset", "0"))
        else:
            location = None  # expired or discarded upstream: start again
    if location is None:
        metadata = (
            f"sha256 {base64.b64encode(bytes.fromhex(sha256)).decode()},"
            f"project {base64.b64encode(str(remote).encode()).decode()}"
        )
        created = uplink.call(
            "POST", "/v1/uploads", headers={**tus, "Upload-Length": str(size), "Upload-Metadata": metadata}
        )
        _expect(created, 201)
        location = _path_of(created.headers["Location"])
        offset = int(created.headers.get("Upload-Offset", "0"))
        _note_upload(session, project_id, sha256, location, size, offset)
    # No per-PATCH checksum: a PATCH cut midway must keep the bytes that arrived (the server verifies the
    # whole blob against its sha256 at the end, and discards it on a mismatch).
    sent = 0
    with blob_store().open(sha256) as source:
        while offset < size:
            source.seek(offset)
            chunk = source.read(uplink.chunk_bytes)
            patched = uplink.call(
                "PATCH",
                location,
                data=chunk,
                headers={
                    **tus,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            sent += len(chunk)
            if patched.status_code == 409:
                head = uplink.call("HEAD", location, headers=tus)
                _expect(head, 200)
                offset = int(head.headers["Upload-Offset"])
                continue
            _expect(patched, 204)
            offset = int(patched.headers["Upload-Offset"])
            _note_upload(session, project_id, sha256, location, size, offset)
    with transaction(session):
        row = q.get_upload(session, project_id, sha256)
        if row is not None:
            row.done_at = utcnow()
    return sent


def _path_of(location: str) -> str:
    """The path of an upload's URL (the upstream may name itself by another host than the relay's)."""
    if "://" in location:
        location = "/" + location.split("://", 1)[1].split("/", 1)[1]
    return location


def _note_upload(session: Session, project_id: int, sha256: str, location: str, size: int, offset: int) -> None:
    with transaction(session):
        row = q.get_upload(session, project_id, sha256)
        if row is None:
            session.add(
                RelayUpload(project_id=project_id, sha256=sha256, location=location, length=size, upload_offset=offset)
            )
        else:
            row.location, row.upload_offset, row.updated_at, row.done_at = location, offset, utcnow(), None


# ---------------------------------------------------------------------------------------------------
# Forms down


def mirror_forms(session: Session, project_id: int, remote: int, uplink: Uplink) -> int:
    """Publish locally every upstream form version the office lacks (from the file it was uploaded as)."""
    from server.services import forms as form_service

    response = uplink.call("GET", f"/v1/projects/{remote}/forms")
    _expect(response, 200)
    with transaction(session):
        have = {
            (form_id, version)
            for form_id, version in session.execute(
                select(Form.xml_form_id, FormVersion.version)
                .join(FormVersion, FormVersion.form_id == Form.id)
                .where(Form.project_id == project_id, FormVersion.status == "published")
            ).all()
        }
    added = 0
    published = _published(response.json())
    for entry in published:
        form_id, version = entry
        if (form_id, version) in have:
            continue
        source = uplink.call("GET", f"/v1/projects/{remote}/forms/{form_id}/versions/{version}/xlsx")
        _expect(source, 200)
        kind = source.headers.get("Content-Type", "")
        filename = f"{form_id}.xml" if "xml" in kind else f"{form_id}.xlsx"
        form_service.create_form_version(
            session,
            project_id,
            source.content,
            filename,
            publish=True,
            actor="relay",
            default_form_id=form_id,
            generate_version=False,
        )
        added += 1
    for form_id, _ in published:
        added += _mirror_media(session, project_id, remote, form_id, uplink)
    return added


def _mirror_media(session: Session, project_id: int, remote: int, form_id: str, uplink: Uplink) -> int:
    """Fetch the media files a mirrored form expects and the office lacks (Collect's own download URL)."""
    from server.services import forms as form_service

    with transaction(session):
        try:
            _, expected = form_service.list_form_attachments(session, project_id, form_id)
        except Exception:
            return 0
    wanted = [a.name for a in expected if not a.present and a.kind != "entity_list"]
    fetched = 0
    for name in wanted:
        answer = uplink.call("GET", f"/v1/projects/{remote}/forms/{form_id}/attachments/{name}")
        if answer.status_code == 404:
            continue  # not uploaded nationally either
        _expect(answer, 200)
        form_service.upload_attachment(
            session,
            project_id,
            form_id,
            name,
            [answer.content],
            actor="relay",
            content_type=answer.headers.get("Content-Type"),
        )
        fetched += 1
    return fetched


def _published(forms: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (str(f["xmlFormId"]), str(f["currentVersion"]))
        for f in forms
        if f.get("currentVersion") is not None and f.get("state") != "closed"
    ]


# ---------------------------------------------------------------------------------------------------
# Entities down


PULL_PAGE = 200


def pull_entities(session: Session, project_id: int, remote: int, uplink: Uplink) -> int:
    """Bring the national ops of every entity changed since the link's cursor into the office's store.

    The office then materialises the same set of ops as the national server (the merge is a pure
    function of the set), so it serves its phones the national versions: an update a phone bases on
    version N means the same causal context here and there, and goes up inside its submission. The
    cursor is saved only after the entities of its page are stored.
    """
    from server.db.queries import entities as eq
    from server.services import entities as entity_service

    added = 0
    while True:
        with transaction(session):
            link = q.get_link(session, project_id)
            assert link is not None
            cursor = link.pull_cursor
        params: dict[str, Any] = {"limit": PULL_PAGE}
        if cursor:
            params["cursor"] = cursor
        page = uplink.call("GET", f"/v1/projects/{remote}/sync/pull", params=params)
        _expect(page, 200)
        body = page.json()
        changed = sorted({str(c["id"]) for c in body["changes"] if c.get("collection") == "entity"})
        details = []
        for key in changed:
            list_name, _, entity_id = key.partition("/")
            detail = uplink.call("GET", f"/v1/projects/{remote}/entities/{list_name}/{entity_id}")
            if detail.status_code == 404:
                continue
            _expect(detail, 200)
            details.append((list_name, entity_id, detail.json()))
        with transaction(session):
            for list_name, entity_id, detail in details:
                ops = [_op_of(h) for h in detail.get("history", [])]
                properties = {f for op in ops for f in op.fields if not f.startswith("__")}
                entity_list = eq.ensure_list(session, project_id, list_name, sorted(properties))
                lock_key = entity_service.entity_lock_key(entity_list.id, entity_id)
                from server.db.queries.sync import lock_keys

                lock_keys(session, [lock_key])
                for op in ops:
                    with session.begin_nested():
                        applied = entity_service.apply_op(
                            session, entity_list, entity_id, op, actor="relay", reviewer=True
                        )
                    added += int(type(applied.outcome).__name__ != "Duplicate")
            link = q.get_link(session, project_id)
            assert link is not None
            link.pull_cursor = str(body["nextCursor"])
        if not body.get("hasMore"):
            return added


def _op_of(history: dict[str, Any]) -> Any:
    from sync.entities import CausalContext, Dot, EntityOp

    return EntityOp(
        op_id=str(history["opId"]),
        dot=Dot(str(history["writer"]), int(history["seq"])),
        context=CausalContext.from_json_obj(history["context"]),
        fields={str(k): str(v) for k, v in history["fields"].items()},
        hlc=int(history["hlc"]),
        source=str(history.get("source") or ""),
        unknown_base=bool(history.get("unknownBase")),
    )
