"""The frozen model of one form version: fields, choices, media and entity declarations.

A ``FormSchema`` is built by parsing the XForm that pyxform generated (the XForm is the stable
contract, see docs/reference/xlsform.md §1.3), never from pyxform's private structures. It is
JSON-serialisable through ``to_json``/``from_json`` so the server can store it per version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# Field kinds: a leaf question, a non-repeating group, or a repeat.
FieldKind = Literal["question", "group", "repeat"]

# Value shapes from docs/reference/xlsform.md §2.2, keyed by the XForm bind type.
BindType = str  # "string", "int", "decimal", "date", "time", "dateTime", "geopoint", "geotrace",
#                 "geoshape", "binary", "barcode", "odk:rank", "boolean", ...

Labels = Mapping[str, str]
"""Text per language code (or language name as the form wrote it); ``""`` when the form is untranslated."""


@dataclass(frozen=True, slots=True)
class Choice:
    """One option of a choice list: its submitted ``name``, labels per language, extra columns."""

    name: str
    labels: Labels = field(default_factory=dict)
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChoiceList:
    """A named list of choices; ``source`` says where devices get it from."""

    name: str
    choices: tuple[Choice, ...] = ()
    source: Literal["inline", "itemsets", "file"] = "inline"
    file_name: str | None = None  # for "file" (select_one_from_file) and "itemsets" (itemsets.csv)


@dataclass(frozen=True, slots=True)
class Field:
    """One node of the primary instance: a question, a group or a repeat.

    ``path`` is the slash-separated path below the instance root, e.g. ``members/board/name``.
    ``repeat`` is the path of the innermost enclosing repeat (``None`` at the top level).
    ``control`` is the XLSForm-level widget: ``select_one``, ``select_multiple``, ``rank``,
    ``image``, ``audio``, ``video``, ``file``, ``input``, ``trigger``, ``range``, ``note``,
    ``calculate`` (no control), ``metadata`` ... .
    """

    path: str
    name: str
    kind: FieldKind
    bind_type: BindType = "string"
    control: str = "calculate"
    labels: Labels = field(default_factory=dict)
    hints: Labels = field(default_factory=dict)
    required: str | None = None
    relevant: str | None = None
    constraint: str | None = None
    calculate: str | None = None
    readonly: str | None = None
    choice_list: str | None = None
    choice_filter: str | None = None
    repeat: str | None = None
    media_type: str | None = None  # for binary questions: "image/*", "audio/*", ...
    save_to: str | None = None  # entity property this field is saved to


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A file devices need for this form (listed in the OpenRosa manifest)."""

    file_name: str
    kind: Literal["image", "audio", "video", "csv", "xml", "geojson", "itemsets", "entity_list", "other"]


@dataclass(frozen=True, slots=True)
class EntityDeclaration:
    """An ``entities`` sheet row: which list, create/update conditions, and saved properties."""

    list_name: str
    create: str | None = None  # XPath condition or "1"/"true"; None when the form never creates
    update: str | None = None  # XPath condition; None when the form never updates
    entity_id: str | None = None  # XPath of the id for updates
    label: str | None = None  # XPath of the label
    repeat: str | None = None  # path of the repeat the entity is scoped to
    properties: Mapping[str, str] = field(default_factory=dict)  # property -> field path


@dataclass(frozen=True, slots=True)
class FormSchema:
    """Everything the server needs to know about one form version."""

    form_id: str
    version: str
    title: str
    root_name: str = "data"
    languages: tuple[str, ...] = ()
    default_language: str | None = None
    fields: tuple[Field, ...] = ()
    choice_lists: Mapping[str, ChoiceList] = field(default_factory=dict)
    media: tuple[MediaRef, ...] = ()
    entities: tuple[EntityDeclaration, ...] = ()
    encrypted: bool = False
    instance_name: str | None = None
    # Language key used in ``labels`` (the code when the form wrote "Français (fr)") -> the name as written.
    language_names: Mapping[str, str] = field(default_factory=dict)

    def field_by_path(self, path: str) -> Field | None:
        """Return the field at ``path``, or ``None`` when the form has no such node."""
        for f in self.fields:
            if f.path == path:
                return f
        return None

    @property
    def repeats(self) -> tuple[Field, ...]:
        """Every repeat group, outermost first, in form order."""
        return tuple(f for f in self.fields if f.kind == "repeat")

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict (stable key order) that ``from_json`` reads back."""
        from forms.schema_json import schema_to_json

        return schema_to_json(self)

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> FormSchema:
        """Rebuild a schema from ``to_json`` output."""
        from forms.schema_json import schema_from_json

        return schema_from_json(data)
