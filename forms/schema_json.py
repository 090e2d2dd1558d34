"""JSON form of ``FormSchema`` (what the server stores per form version); the round trip is exact."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from forms.schema import (
    Choice,
    ChoiceList,
    EntityDeclaration,
    Field,
    FieldKind,
    FormSchema,
    MediaRef,
)

SCHEMA_JSON_VERSION = 1

_FIELD_OPTIONAL = (
    "required",
    "relevant",
    "constraint",
    "calculate",
    "readonly",
    "choice_list",
    "choice_filter",
    "repeat",
    "media_type",
    "save_to",
)


def _field_to_json(f: Field) -> dict[str, Any]:
    out: dict[str, Any] = {
        "path": f.path,
        "name": f.name,
        "kind": f.kind,
        "bind_type": f.bind_type,
        "control": f.control,
        "labels": dict(f.labels),
        "hints": dict(f.hints),
    }
    for key in _FIELD_OPTIONAL:
        out[key] = getattr(f, key)
    return out


def _field_from_json(d: Mapping[str, Any]) -> Field:
    return Field(
        path=str(d["path"]),
        name=str(d["name"]),
        kind=cast(FieldKind, d["kind"]),
        bind_type=str(d.get("bind_type", "string")),
        control=str(d.get("control", "calculate")),
        labels=dict(d.get("labels") or {}),
        hints=dict(d.get("hints") or {}),
        **{key: d.get(key) for key in _FIELD_OPTIONAL},
    )


def _choice_list_to_json(c: ChoiceList) -> dict[str, Any]:
    return {
        "name": c.name,
        "source": c.source,
        "file_name": c.file_name,
        "choices": [{"name": ch.name, "labels": dict(ch.labels), "extra": dict(ch.extra)} for ch in c.choices],
    }


def _choice_list_from_json(d: Mapping[str, Any]) -> ChoiceList:
    return ChoiceList(
        name=str(d["name"]),
        source=d.get("source", "inline"),
        file_name=d.get("file_name"),
        choices=tuple(
            Choice(
                name=str(ch["name"]),
                labels=dict(ch.get("labels") or {}),
                extra=dict(ch.get("extra") or {}),
            )
            for ch in d.get("choices") or ()
        ),
    )


def _entity_to_json(e: EntityDeclaration) -> dict[str, Any]:
    return {
        "list_name": e.list_name,
        "create": e.create,
        "update": e.update,
        "entity_id": e.entity_id,
        "label": e.label,
        "repeat": e.repeat,
        "properties": dict(e.properties),
    }


def _entity_from_json(d: Mapping[str, Any]) -> EntityDeclaration:
    return EntityDeclaration(
        list_name=str(d["list_name"]),
        create=d.get("create"),
        update=d.get("update"),
        entity_id=d.get("entity_id"),
        label=d.get("label"),
        repeat=d.get("repeat"),
        properties=dict(d.get("properties") or {}),
    )


def schema_to_json(schema: FormSchema) -> dict[str, Any]:
    """Return a JSON-compatible dict of ``schema`` with a stable key order."""
    return {
        "schema_json_version": SCHEMA_JSON_VERSION,
        "form_id": schema.form_id,
        "version": schema.version,
        "title": schema.title,
        "root_name": schema.root_name,
        "languages": list(schema.languages),
        "default_language": schema.default_language,
        "encrypted": schema.encrypted,
        "instance_name": schema.instance_name,
        "language_names": dict(schema.language_names),
        "fields": [_field_to_json(f) for f in schema.fields],
        "choice_lists": {name: _choice_list_to_json(c) for name, c in schema.choice_lists.items()},
        "media": [{"file_name": m.file_name, "kind": m.kind} for m in schema.media],
        "entities": [_entity_to_json(e) for e in schema.entities],
    }


def schema_from_json(data: Mapping[str, Any]) -> FormSchema:
    """Rebuild a ``FormSchema`` from ``schema_to_json`` output."""
    return FormSchema(
        form_id=str(data["form_id"]),
        version=str(data.get("version", "")),
        title=str(data.get("title", "")),
        root_name=str(data.get("root_name", "data")),
        languages=tuple(data.get("languages") or ()),
        default_language=data.get("default_language"),
        encrypted=bool(data.get("encrypted", False)),
        instance_name=data.get("instance_name"),
        language_names=dict(data.get("language_names") or {}),
        fields=tuple(_field_from_json(f) for f in data.get("fields") or ()),
        choice_lists={name: _choice_list_from_json(c) for name, c in (data.get("choice_lists") or {}).items()},
        media=tuple(MediaRef(file_name=str(m["file_name"]), kind=m["kind"]) for m in data.get("media") or ()),
        entities=tuple(_entity_from_json(e) for e in data.get("entities") or ()),
    )
