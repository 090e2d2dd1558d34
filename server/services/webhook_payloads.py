"""The body of a webhook message: ``{type, timestamp, data, links}``, or KoboToolbox's REST-service shape.

Rendered when the message is sent, from the event's payload and the immutable rows it names (a
submission version is never changed, only followed by another), so the outbox row stays small and
the hot path writes no copy of the record. An attempt renders the body again: the record never
changes, the submission's current review state may.

``data`` of a submission event is its version's record as JSON; when the subscription names a
language, ``data.labels`` adds the question labels and the chosen choices' labels in it (the record
itself is left as submitted). ``links`` are absolute URLs of the API (the submission, its files).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from forms.schema import FormSchema
from server.db.models.submissions import Submission, SubmissionAttachment, SubmissionVersion
from server.db.models.webhooks import Event, WebhookSubscription
from server.services.submissions import _schema

KOBO_KINDS = ("submission.created", "submission.updated")


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _leaves(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every answer of a record: groups are dicts, repeats lists of dicts."""
    for name, value in values.items():
        path = f"{prefix}{name}"
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{path}/")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    yield from _leaves(item, f"{path}/")
        else:
            yield path, value


def labels_in(schema: FormSchema, record: Mapping[str, Any], language: str) -> dict[str, Any]:
    """Question labels and chosen choices' labels of a record in ``language`` (paths as in the record)."""
    questions: dict[str, str] = {}
    choices: dict[str, Any] = {}
    for path, value in _leaves(record):
        found = schema.field_by_path(path)
        if found is None:
            continue
        if language in found.labels:
            questions[path] = found.labels[language]
        if found.choice_list and isinstance(value, str) and value:
            choice_list = schema.choice_lists.get(found.choice_list)
            by_name = {c.name: c.labels.get(language, c.name) for c in choice_list.choices} if choice_list else {}
            if found.control == "select_multiple":
                choices[path] = [by_name.get(v, v) for v in value.split()]
            else:
                choices[path] = by_name.get(value, value)
    return {"language": language, "questions": questions, "choices": choices}


def _submission_links(base_url: str, project_id: int, form_id: str, instance_id: str) -> str:
    return (
        f"{base_url}/v1/projects/{project_id}/forms/{quote(form_id, safe='')}/submissions/{quote(instance_id, safe='')}"
    )


def _submission_data(
    session: Session, subscription: WebhookSubscription, event: Event, base_url: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = dict(event.payload)
    form_id = event.form_id or ""
    instance_id = str(payload.get("instance_id", ""))
    data: dict[str, Any] = {"form_id": form_id, **payload}
    link = _submission_links(base_url, event.project_id, form_id, instance_id)
    links: dict[str, Any] = {"submission": link}
    version_id = payload.get("version_id")
    version = session.get(SubmissionVersion, version_id) if version_id is not None else None
    if version is not None:
        submission = session.get(Submission, version.submission_id)
        data.update(
            {
                "instance_name": version.instance_name,
                "received_at": _iso(version.received_at),
                "source": version.source,
                "device_id": version.device_id,
                "submitter_id": version.submitter_id,
                "review_state": submission.review_state if submission is not None else None,
                "record": version.record,
            }
        )
        files = session.scalars(
            select(SubmissionAttachment)
            .where(SubmissionAttachment.version_id == version.id)
            .order_by(SubmissionAttachment.name)
        ).all()
        links["attachments"] = [
            {
                "name": a.name,
                "present": a.blob_sha256 is not None,
                "url": f"{link}/attachments/{quote(a.name, safe='')}",
            }
            for a in files
        ]
        if subscription.language:
            schema = _schema(session, version.form_version_id, None)
            if schema is not None:
                data["labels"] = labels_in(schema, version.record, subscription.language)
    return data, links


def _standard(session: Session, subscription: WebhookSubscription, event: Event, base_url: str) -> dict[str, Any]:
    kind = event.kind
    if kind.startswith("submission."):
        data, links = _submission_data(session, subscription, event, base_url)
    elif kind.startswith("entity."):
        data = dict(event.payload)
        entity = data.get("entity") or {}
        links = {
            "entity": f"{base_url}/v1/projects/{event.project_id}/entities/"
            f"{quote(str(entity.get('list', '')), safe='')}/{quote(str(entity.get('id', '')), safe='')}"
        }
    else:
        data = {"form_id": event.form_id, **event.payload}
        links = {"form": f"{base_url}/v1/projects/{event.project_id}/forms/{quote(event.form_id or '', safe='')}"}
    return {
        "type": kind,
        "timestamp": _iso(event.created_at),
        "event_id": event.id,
        "project_id": event.project_id,
        "data": data,
        "links": links,
    }


def _kobo(session: Session, subscription: WebhookSubscription, event: Event, base_url: str) -> dict[str, Any]:
    """KoboToolbox's REST-service JSON: the answers by their slash paths, plus its underscore fields."""
    data, links = _submission_data(session, subscription, event, base_url)
    body: dict[str, Any] = dict(_leaves(data.get("record") or {}))
    instance_id = str(data.get("instance_id", ""))
    body.update(
        {
            "_id": data.get("submission_id"),
            "_uuid": instance_id.removeprefix("uuid:"),
            "meta/instanceID": instance_id,
            "_xform_id_string": data.get("form_id"),
            "__version__": data.get("form_version"),
            "_submission_time": data.get("received_at"),
            "_status": "submitted_via_web",
            "_validation_status": {"uid": data.get("review_state")},
            "_attachments": [
                {"filename": a["name"], "download_url": a["url"]} for a in links.get("attachments", []) if a["present"]
            ],
        }
    )
    return body


def render(session: Session, subscription: WebhookSubscription, event: Event, base_url: str) -> bytes:
    """The JSON bytes a subscription receives for an event."""
    if subscription.payload_format == "kobo" and event.kind in KOBO_KINDS:
        body = _kobo(session, subscription, event, base_url)
    else:
        body = _standard(session, subscription, event, base_url)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
