"""A parsed submission: the values of one instance, by the form's structure.

``values`` mirrors the submitted XML below the root: a group is a dict, a repeat is a list of
dicts (one per instance, in order), a leaf is its text (``""`` when the element is empty).
Nodes the form does not know are kept the same way (e.g. ``formhub/uuid``); they are listed in
``unknown_paths``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

Value = Union[str, "Group", "RepeatInstances"]
Group = Mapping[str, Any]  # name -> Value
RepeatInstances = list[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class EntityChange:
    """A ``meta/entity`` block of a submission: create or update one entity of a list."""

    list_name: str
    entity_id: str
    create: bool
    update: bool
    label: str | None
    base_version: int | None = None
    trunk_version: int | None = None
    branch_id: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubmissionRecord:
    """One submitted instance, parsed against its form version."""

    form_id: str
    version: str
    instance_id: str
    values: Mapping[str, Any]
    deprecated_id: str | None = None
    instance_name: str | None = None
    attachments: tuple[str, ...] = ()  # file names referenced by binary fields
    unknown_paths: tuple[str, ...] = ()
    entities: tuple[EntityChange, ...] = ()
    encrypted: bool = False
