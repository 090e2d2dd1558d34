"""The table plan of an export: which files, which columns, in which order, for all versions of a form.

``plan_tables(schemas, options)`` merges the fields of every version and lays out ODK Central's zip:
the root table ``{form_id}.csv`` and one table per repeat (nested too), ``{form_id}-{repeat}.csv``,
with ``~1``, ``~2`` ... added in depth-first order when two repeats share a name.

Union of versions: ``schemas`` are given oldest first (publication order); the last one is the current
version. The merged order is the current version's field order; a field that only older versions have
goes right after its nearest preceding sibling (in the newest older version that has it), or right after
its parent group when it was the first child, or at the end. When a field changed type between versions,
the newest definition wins; choices are the union (newest version's order, then older-only choices).

Headers: the field's path relative to its table, ``/`` replaced by ``separator`` (``group_paths``), or
its bare name. With ``headers="labels"`` the field label (in ``lang``, then the default language, then
the name) replaces each path segment. A header that would repeat one already in the table gets ``~2``,
``~3``. A geopoint (``split_geopoint``) becomes ``-Latitude``, ``-Longitude``, ``-Altitude``,
``-Accuracy``; a split select_multiple keeps its column and adds ``/<choice>`` 0/1 columns, one per
choice of the form.

Root metadata columns: ``SubmissionDate`` first; after the data ``KEY, SubmitterID, DeviceID,
ReviewState, AttachmentsPresent, AttachmentsExpected, Edits, FormVersion``, then ``Status``
(``superseded``/``deleted``/empty) only when ``include_edits`` or ``include_deleted`` is on, then
``_issues``. Repeat tables end with ``PARENT_KEY, KEY, _issues``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from exports.options import ExportOptionError, ExportOptions
from forms.schema import Choice, Field, FormSchema, Labels

ColumnKind = Literal["meta", "value", "geo_part", "choice_flag"]

ROOT_META_BEFORE = ("SubmissionDate",)
ROOT_META_AFTER = (
    "KEY",
    "SubmitterID",
    "DeviceID",
    "ReviewState",
    "AttachmentsPresent",
    "AttachmentsExpected",
    "Edits",
    "FormVersion",
)
STATUS_COLUMN = "Status"  # only when superseded or deleted rows may appear
REPEAT_META_AFTER = ("PARENT_KEY", "KEY")
ISSUES_COLUMN = "_issues"
GEOPOINT_PARTS = ("Latitude", "Longitude", "Altitude", "Accuracy")


@dataclass(frozen=True, slots=True)
class Column:
    """One column: a metadata value, a field's value, a geopoint part, or a 0/1 choice flag."""

    header: str
    kind: ColumnKind
    path: str = ""  # field path (absolute) for field columns; the metadata name for "meta"
    part: int = -1  # index into GEOPOINT_PARTS
    choice: str = ""  # choice name for "choice_flag"


@dataclass(frozen=True, slots=True)
class TablePlan:
    """One output table: its file name, the repeat it holds (``None``: root) and its columns."""

    file_name: str
    repeat_path: str | None
    parent_repeat: str | None
    columns: tuple[Column, ...]

    @property
    def headers(self) -> list[str]:
        """The header row."""
        return [c.header for c in self.columns]

    @property
    def stem(self) -> str:
        """The file name without ``.csv`` (used for sheet names)."""
        return self.file_name[: -len(".csv")]


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """All tables of one export, with the merged fields and choices they are built from."""

    form_id: str
    tables: tuple[TablePlan, ...]
    fields: Mapping[str, Field]  # merged, by path, in merged order
    choices: Mapping[str, tuple[Choice, ...]]  # by field path (select/rank fields with a known list)
    lang: str | None  # the resolved label language key, or None
    default_language: str | None
    geopoint_path: str | None  # root-level geopoint used for GeoJSON


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def merge_fields(schemas: Sequence[FormSchema]) -> tuple[Field, ...]:
    """Union of the fields of all versions (oldest first in ``schemas``), in the documented order."""
    merged = list(schemas[-1].fields)
    present = {f.path for f in merged}
    for schema in reversed(schemas[:-1]):
        for i, f in enumerate(schema.fields):
            if f.path in present:
                continue
            anchor = next(
                (
                    g.path
                    for g in reversed(schema.fields[:i])
                    if _parent(g.path) == _parent(f.path) and g.path in present
                ),
                None,
            )
            paths = [m.path for m in merged]
            if anchor is not None:
                pos = paths.index(anchor) + 1
                while pos < len(paths) and paths[pos].startswith(anchor + "/"):
                    pos += 1
            elif _parent(f.path) in present:
                pos = paths.index(_parent(f.path)) + 1
            else:
                pos = len(merged)
            merged.insert(pos, f)
            present.add(f.path)
    return tuple(merged)


def merge_choices(schemas: Sequence[FormSchema], fields: Iterable[Field]) -> dict[str, tuple[Choice, ...]]:
    """Per select/rank field path, the union of its choices over versions (newest order first)."""
    out: dict[str, tuple[Choice, ...]] = {}
    for f in fields:
        if f.choice_list is None:
            continue
        seen: dict[str, Choice] = {}
        known = False
        for schema in reversed(schemas):
            own = schema.field_by_path(f.path)
            if own is None or own.choice_list is None:
                continue
            lst = schema.choice_lists.get(own.choice_list)
            if lst is None or (lst.source != "inline" and not lst.choices):
                continue  # choices come from a file we do not have: cannot check them
            known = True
            for c in lst.choices:
                seen.setdefault(c.name, c)
        if known:
            out[f.path] = tuple(seen.values())
    return out


def resolve_language(schemas: Sequence[FormSchema], lang: str | None) -> str | None:
    """Map ``lang`` (``fr``, ``French``, ``French (fr)``) to the label key the forms use."""
    if lang is None:
        return None
    keys: list[str] = []
    for s in reversed(schemas):
        keys += [k for k in s.languages if k not in keys]
    for k in keys:
        if k == lang:
            return k
    wanted = lang.casefold()
    for k in keys:
        code = re.search(r"\(([^)]+)\)\s*$", k)
        name = re.sub(r"\s*\([^)]*\)\s*$", "", k)
        if wanted in (k.casefold(), name.casefold()) or (code and code.group(1).casefold() == wanted):
            return k
    raise ExportOptionError("lang", f"the form has no language {lang!r} (it has: {', '.join(keys) or 'none'})")


def pick_label(labels: Labels, lang: str | None, default: str | None, fallback: str) -> str:
    """The label in ``lang``, else in the default language, else untranslated, else ``fallback``."""
    for key in (lang, default, "", "default"):
        if key is not None and labels.get(key):
            return labels[key]
    return fallback


_UNSAFE_FILE_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def _safe_file_name(name: str) -> str:
    return _UNSAFE_FILE_CHARS.sub("_", name).strip(". ") or "_"


class _HeaderSet:
    """Headers of one table; a clash gets ``~2``, ``~3`` so every header is unique."""

    def __init__(self, reserved: Iterable[str]) -> None:
        self.used = set(reserved)

    def take(self, header: str) -> str:
        out, n = header, 1
        while out in self.used:
            n += 1
            out = f"{header}~{n}"
        self.used.add(out)
        return out


def plan_tables(schemas: Sequence[FormSchema], options: ExportOptions) -> ExportPlan:
    """Plan the tables and columns for all versions of one form (``schemas`` oldest first)."""
    if not schemas:
        raise ValueError("plan_tables needs at least one FormSchema")
    newest = schemas[-1]
    fields = merge_fields(schemas)
    by_path = {f.path: f for f in fields}
    choices = merge_choices(schemas, fields)
    lang = resolve_language(schemas, options.lang)
    default = newest.default_language

    repeats = [f for f in fields if f.kind == "repeat"]
    repeat_paths = [r.path for r in repeats]

    def enclosing_repeat(path: str) -> str | None:
        # From the paths, not Field.repeat: robust to whether a parser sets a repeat's own ``repeat``.
        found = [r for r in repeat_paths if path.startswith(r + "/")]
        return max(found, key=len) if found else None

    names_used: dict[str, int] = {}
    file_names: dict[str | None, str] = {None: _safe_file_name(newest.form_id) + ".csv"}
    for r in repeats:  # depth-first form order: first keeps the plain name, later ones get ~1, ~2
        base = _safe_file_name(f"{newest.form_id}-{r.name}")
        n = names_used.get(base, 0)
        names_used[base] = n + 1
        file_names[r.path] = f"{base}~{n}.csv" if n else f"{base}.csv"
    taken_files = {file_names[None]}
    for r in repeats:  # a repeat named like the "~n" of another is vanishingly rare; still keep unique
        while file_names[r.path] in taken_files:
            file_names[r.path] = file_names[r.path][: -len(".csv")] + "_.csv"
        taken_files.add(file_names[r.path])

    def header_for(f: Field, table_repeat: str | None) -> str:
        rel = f.path if table_repeat is None else f.path[len(table_repeat) + 1 :]
        segments = rel.split("/")
        if options.headers == "labels":
            prefix = "" if table_repeat is None else table_repeat + "/"
            texts = []
            for i, seg in enumerate(segments):
                node = by_path.get(prefix + "/".join(segments[: i + 1]))
                texts.append(pick_label(node.labels, lang, default, seg) if node else seg)
            segments = texts
        return options.separator.join(segments) if options.group_paths else segments[-1]

    status = options.include_edits or options.include_deleted
    tables: list[TablePlan] = []
    for repeat in [None, *repeats]:
        rpath = None if repeat is None else repeat.path
        after = (*ROOT_META_AFTER, *((STATUS_COLUMN,) if status else ())) if rpath is None else REPEAT_META_AFTER
        before = ROOT_META_BEFORE if rpath is None else ()
        headers = _HeaderSet([*before, *after, ISSUES_COLUMN])
        cols = [Column(h, "meta", h) for h in before]
        for f in fields:
            if f.kind != "question" or enclosing_repeat(f.path) != rpath:
                continue
            h = header_for(f, rpath)
            if f.bind_type == "geopoint" and options.split_geopoint:
                cols += [Column(headers.take(f"{h}-{p}"), "geo_part", f.path, i) for i, p in enumerate(GEOPOINT_PARTS)]
                continue
            cols.append(Column(headers.take(h), "value", f.path))
            if f.control == "select_multiple" and options.split_select_multiple:
                for c in choices.get(f.path, ()):
                    text = pick_label(c.labels, lang, default, c.name) if options.headers == "labels" else c.name
                    cols.append(Column(headers.take(f"{h}/{text}"), "choice_flag", f.path, choice=c.name))
        cols += [Column(h, "meta", h) for h in (*after, ISSUES_COLUMN)]
        parent = None if repeat is None else enclosing_repeat(repeat.path)
        tables.append(TablePlan(file_names[rpath], rpath, parent, tuple(cols)))

    for path, _ in options.field_equals:
        wanted = by_path.get(path)
        if wanted is None or wanted.kind != "question" or enclosing_repeat(wanted.path) is not None:
            raise ExportOptionError(f"field.{path}", "not a question outside repeats in this form")

    geopoint_path: str | None
    if options.geojson_field is not None:
        g = by_path.get(options.geojson_field)
        if g is None or g.bind_type != "geopoint" or enclosing_repeat(g.path) is not None:
            raise ExportOptionError("geojson_field", "not a geopoint question outside repeats in this form")
        geopoint_path = g.path
    else:
        geopoint_path = next(
            (
                f.path
                for f in fields
                if f.kind == "question" and f.bind_type == "geopoint" and enclosing_repeat(f.path) is None
            ),
            None,
        )
    return ExportPlan(newest.form_id, tuple(tables), by_path, choices, lang, default, geopoint_path)
