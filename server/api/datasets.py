"""ODK Central's datasets API over Fieldsync's entity lists: ``/v1/projects/{id}/datasets``.

Paths, fields (camelCase) and answers are Central's: lists are bare arrays with ``X-Total-Count``, a
delete answers ``{"success": true}``. Writes go through the order-independent merge
(``server.services.datasets`` says how ``baseVersion`` and ``force`` map onto it). Reading needs
``entity.read``; writing ``entity.resolve`` (managers and admins).
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

from flask import Blueprint, Response
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from server.api.contract import ListOf, documented
from server.api.conventions import json_list
from server.api.wire import load_json, load_query
from server.auth import require
from server.services import datasets as svc
from server.store import db_session

bp = Blueprint("datasets", __name__, url_prefix="/v1")

DATASETS = "/projects/<int:project_id>/datasets"
DATASET = f"{DATASETS}/<name>"
ENTITY = f"{DATASET}/entities/<uuid>"
_TEXT = validate.Length(min=1, max=200)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class PropertyOut(Schema):
    """A dataset property."""

    name = fields.String(required=True)
    odataName = fields.String(required=True)
    publishedAt = fields.String(required=True)
    forms = fields.List(fields.String(), required=True)


class DatasetOut(Schema):
    """A dataset (entity list) as Central shows it; ``properties`` in the detail."""

    name = fields.String(required=True)
    projectId = fields.Integer(required=True)
    createdAt = fields.String(required=True)
    approvalRequired = fields.Boolean(required=True)
    ownerOnly = fields.Boolean(required=True)
    entities = fields.Integer()
    properties = fields.List(fields.Nested(PropertyOut))
    sourceForms = fields.List(fields.Dict())
    linkedForms = fields.List(fields.Dict())


class DatasetIn(_Strict):
    """A new dataset: its name (``approvalRequired`` must be false: entities are made on receipt)."""

    name = fields.String(required=True, validate=_TEXT)
    approvalRequired = fields.Boolean(load_default=False, validate=validate.Equal(False))


class PropertyIn(_Strict):
    """A new property of a dataset."""

    name = fields.String(required=True, validate=_TEXT)


class VersionOut(Schema):
    """An entity's current version."""

    label = fields.String(required=True)
    current = fields.Boolean(required=True)
    createdAt = fields.String(required=True)
    creatorId = fields.Integer(required=True)
    userAgent = fields.String(required=True)
    version = fields.Integer(required=True)
    baseVersion = fields.Integer(allow_none=True)
    conflictingProperties = fields.List(fields.String(), allow_none=True)
    data = fields.Dict(keys=fields.String(), values=fields.String())


class EntityOut(Schema):
    """An entity as Central shows it: uuid, creator, times, ``conflict`` (null, soft, hard), current version."""

    uuid = fields.String(required=True)
    creatorId = fields.Integer(required=True)
    createdAt = fields.String(required=True)
    updatedAt = fields.String(allow_none=True)
    deletedAt = fields.String(allow_none=True)
    conflict = fields.String(allow_none=True)
    currentVersion = fields.Nested(VersionOut, required=True)


class NewEntity(_Strict):
    """One entity to create (``uuid`` made here when absent)."""

    uuid = fields.String(validate=_TEXT)
    label = fields.String(required=True, validate=validate.Length(min=1, max=10_000))
    data = fields.Dict(keys=fields.String(validate=_TEXT), values=fields.Raw(), load_default=dict)


class SourceIn(Schema):
    """Where a bulk create came from (recorded by Central; accepted and ignored here)."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String()
    size = fields.Raw()


class EntitiesIn(_Strict):
    """One entity (``uuid``, ``label``, ``data``) or many (``entities`` and ``source``)."""

    uuid = fields.String(validate=_TEXT)
    label = fields.String(validate=validate.Length(min=1, max=10_000))
    data = fields.Dict(keys=fields.String(validate=_TEXT), values=fields.Raw())
    entities = fields.List(fields.Nested(NewEntity), validate=validate.Length(min=1, max=50_000))
    source = fields.Nested(SourceIn)

    @validates_schema
    def one_or_many(self, data: dict[str, Any], **_: Any) -> None:
        """Either ``entities`` or a ``label``: not both, not neither."""
        if ("entities" in data) == ("label" in data):
            raise ValidationError("Give either label (and data) for one entity, or entities for many")


class EntityChangeIn(_Strict):
    """What an update changes: the label, some properties, or both."""

    label = fields.String(validate=validate.Length(min=1, max=10_000))
    data = fields.Dict(keys=fields.String(validate=_TEXT), values=fields.Raw(), load_default=dict)


class UpdateQuery(_Strict):
    """``baseVersion``: the version you read (a served version); or ``force=true``."""

    baseVersion = fields.Integer(load_default=None, validate=validate.Range(min=1))
    force = fields.Boolean(load_default=False)


class DeletedQuery(_Strict):
    """``deleted=true``: the deleted entities (the trash), as Central."""

    deleted = fields.Boolean(load_default=False)


class SuccessOut(Schema):
    """Central's answer to a delete or a bulk create."""

    success = fields.Boolean(required=True)


@bp.get(DATASETS)
@documented({200: ListOf(DatasetOut)}, response_headers={"X-Total-Count": "The number of datasets"})
def list_datasets(project_id: int) -> Response:
    """The project's datasets (entity lists) with their entity counts."""
    require("entity.read", project_id)
    return json_list(svc.list_datasets(db_session(), project_id), DatasetOut())


@bp.post(DATASETS)
@documented({200: DatasetOut}, body=DatasetIn, errors=(409,))
def create_dataset(project_id: int) -> dict[str, Any]:
    """Create an empty dataset (``409`` when the name is taken)."""
    principal = require("entity.resolve", project_id)
    body = load_json(DatasetIn())
    return dict(DatasetOut().dump(svc.create_dataset(db_session(), project_id, body["name"], principal.actor)))


@bp.get(DATASET)
@documented({200: DatasetOut})
def dataset_detail(project_id: int, name: str) -> dict[str, Any]:
    """One dataset with its properties."""
    require("entity.read", project_id)
    return dict(DatasetOut().dump(svc.dataset_detail(db_session(), project_id, name)))


@bp.post(f"{DATASET}/properties")
@documented({200: SuccessOut}, body=PropertyIn, errors=(409,))
def add_property(project_id: int, name: str) -> dict[str, Any]:
    """Add a property to a dataset (``409`` when it has it)."""
    principal = require("entity.resolve", project_id)
    body = load_json(PropertyIn())
    svc.add_property(db_session(), project_id, name, body["name"], principal.actor)
    return {"success": True}


@bp.get(f"{DATASET}/entities")
@documented({200: ListOf(EntityOut)}, query=DeletedQuery, response_headers={"X-Total-Count": "The number of entities"})
def list_entities(project_id: int, name: str) -> Response:
    """The dataset's entities with their current data (``?deleted=true``: the deleted ones)."""
    require("entity.read", project_id)
    args = load_query(DeletedQuery())
    return json_list(svc.list_entities(db_session(), project_id, name, args["deleted"]), EntityOut())


@bp.post(f"{DATASET}/entities")
@documented({200: EntityOut}, body=EntitiesIn, errors=(409,), notes='Many entities answer `{"success": true}`.')
def create_entities(project_id: int, name: str) -> dict[str, Any]:
    """Create one entity, or many in one transaction (all or none)."""
    principal = require("entity.resolve", project_id)
    body = load_json(EntitiesIn())
    if "entities" in body:
        items = [(e.get("uuid") or str(uuid_module.uuid4()), e["label"], e["data"]) for e in body["entities"]]
        svc.create_entities(db_session(), project_id, name, items, principal.actor)
        return {"success": True}
    new_uuid = body.get("uuid") or str(uuid_module.uuid4())
    created = svc.create_entity(
        db_session(), project_id, name, new_uuid, body["label"], body.get("data", {}), principal.actor
    )
    return dict(EntityOut().dump(created))


@bp.get(ENTITY)
@documented({200: EntityOut})
def get_entity(project_id: int, name: str, uuid: str) -> dict[str, Any]:
    """One entity with its current version's data."""
    require("entity.read", project_id)
    return dict(EntityOut().dump(svc.get_entity(db_session(), project_id, name, uuid)))


@bp.patch(ENTITY)
@documented({200: EntityOut}, body=EntityChangeIn, query=UpdateQuery, errors=(409,))
def update_entity(project_id: int, name: str, uuid: str) -> dict[str, Any]:
    """Update an entity based on ``baseVersion`` (merged with what it did not see) or ``force=true``."""
    principal = require("entity.resolve", project_id)
    args = load_query(UpdateQuery())
    body = load_json(EntityChangeIn())
    updated = svc.update_entity(
        db_session(),
        project_id,
        name,
        uuid,
        label=body.get("label"),
        data=body["data"],
        base_version=args["baseVersion"],
        force=args["force"],
        actor=principal.actor,
    )
    return dict(EntityOut().dump(updated))


@bp.delete(ENTITY)
@documented({200: SuccessOut})
def delete_entity(project_id: int, name: str, uuid: str) -> dict[str, Any]:
    """Delete an entity (kept with its history; restore brings it back)."""
    principal = require("entity.resolve", project_id)
    svc.set_deleted(db_session(), project_id, name, uuid, deleted=True, actor=principal.actor)
    return {"success": True}


@bp.post(f"{ENTITY}/restore")
@documented({200: EntityOut})
def restore_entity(project_id: int, name: str, uuid: str) -> dict[str, Any]:
    """Restore a deleted entity."""
    principal = require("entity.resolve", project_id)
    return dict(
        EntityOut().dump(svc.set_deleted(db_session(), project_id, name, uuid, deleted=False, actor=principal.actor))
    )
