"""Records to table rows: filtering, cleaning, keys, labels — shared by every export format.

``export_rows(plan, options, records, report)`` reads the records once and yields
``(table index, cells)`` pairs: a submission's root row first, then its repeat rows depth-first. It
holds one submission at a time, so every writer built on it streams.

Keys follow ODK Central: the root ``KEY`` is the instanceID; a repeat row's ``KEY`` is its parent's
``KEY`` + ``/<path of the repeat relative to the parent table>[n]`` (n 1-based), and its ``PARENT_KEY``
is the parent's ``KEY``. Values the forms do not know (``formhub/uuid``, fields of no version) are not
exported.

Speed: an export runs over millions of cells, so the plan is compiled once into ``_Table``/``_Slot``
objects (the path of every field split in advance, its cleaning memoised per column, the report keys
built once); a row is then one pass over the table's fields with no per-cell look-up by name.

On top of that, a function making a submission's rows is generated once from the plan (``_compile_fast``):
straight-line code reading every field by its constant key, taking each field's finished cell(s) from a memo
keyed by the raw value, building each row with one list display, repeat tables as inlined loops. It covers
the common submission, where no value is changed by cleaning or flagged; any other one (a step or an issue
to count, a value that is not text, a group or repeat instance that is not a dict) is built again by the
general path above, so both give the same cells.
``tests/exports/test_rows_fast.py`` checks that on random records and options.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from functools import partial
from typing import Any

from exports.cleaning import Cleaned, CleaningReport, ReportKey, clean_value
from exports.options import ExportOptions
from exports.records import ExportRecord
from exports.tables import ISSUES_COLUMN, REPEAT_META_AFTER, Column, ExportPlan, TablePlan

LABEL_JOIN = "; "  # select_multiple labels can contain spaces, so labels are joined with "; "
MEMO_MAX = 1024  # cleaned values remembered per column (choices, dates, numbers repeat a lot)
_NOT_A_VALUE = Cleaned("", issue="a group or repeat where a value was expected")
# Bind types clean_value treats as typed; every other one is free text (normalise_text only).
_TYPED_BINDS = frozenset({"int", "decimal", "date", "time", "dateTime", "geopoint", "odk:rank"})
_CHOICE_CONTROLS = frozenset({"select_one", "select_multiple", "rank"})


@dataclass(frozen=True, slots=True)
class TableSummary:
    """One written table: file name and number of data rows."""

    file_name: str
    rows: int
    columns: int


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export wrote: tables, submissions read/exported/excluded, and cleaning counts."""

    tables: tuple[TableSummary, ...]
    records_read: int
    records_exported: int
    excluded: Mapping[str, int]
    changes: Mapping[ReportKey, int]


def summarise(plan: ExportPlan, row_counts: Counter[int], report: CleaningReport) -> ExportSummary:
    """Build the ``ExportSummary`` of a finished export."""
    tables = tuple(TableSummary(t.file_name, row_counts[i], len(t.columns)) for i, t in enumerate(plan.tables))
    return ExportSummary(tables, report.records_read, row_counts[0], dict(report.excluded), dict(report.changes))


def _lookup(ctx: Mapping[str, Any], segs: tuple[str, ...]) -> Any:
    node: Any = ctx
    for seg in segs:
        if type(node) is dict:  # what JSON gives: skip the slower checks below
            node = node.get(seg)
            continue
        if isinstance(node, list):  # a group sent twice: read the first, as devices never do this
            node = node[0] if node else None
        if not isinstance(node, Mapping):
            return None
        node = node.get(seg)
    return node


def _instances(ctx: Mapping[str, Any], holder_segs: tuple[str, ...], last: str) -> list[Mapping[str, Any]]:
    holder = _lookup(ctx, holder_segs) if holder_segs else ctx
    if not isinstance(holder, Mapping):
        return []
    found = holder.get(last)
    if type(found) is list:  # what JSON gives: dicts in a list, checked without the Mapping ABC
        return [i for i in found if type(i) is dict or isinstance(i, Mapping)]
    if isinstance(found, Mapping):
        return [found]
    if isinstance(found, list):
        return [i for i in found if isinstance(i, Mapping)]
    return []


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    """Remember ``value`` under ``key``, emptying the memo first when it is full (memory stays flat)."""
    if len(memo) >= MEMO_MAX:
        memo.clear()
    memo[key] = value


def _utc_iso(rec: ExportRecord) -> str:
    utc = rec.submission_date
    if utc.tzinfo is not UTC:  # the server's records are in UTC already
        utc = utc.astimezone(UTC)
    if utc.year >= 1000:  # isoformat(timespec="milliseconds") + "Z" (truncated, as it), at half its cost
        fields = (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond // 1000)
        return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % fields  # noqa: UP031  # faster than format() here
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _NotFast(Exception):
    """A row the generated code leaves to the general path (a step or issue to count, a value not text)."""


_NO_GROUP: Mapping[str, Any] = {}  # a group the record does not have: every field in it is empty
# The root table's metadata cells, as the generated row code computes them from ``rec`` (the general
# path's ``meta`` in ``_RowBuilder.rows`` gives the same); any other name is an empty cell.
_ROOT_META_CODE = {
    "SubmissionDate": "_utc_iso(rec)",
    "KEY": "rec.instance_id",
    "SubmitterID": "rec.submitter",
    "DeviceID": "rec.device_id",
    "ReviewState": 'rec.review_state or ""',
    "AttachmentsPresent": "str(rec.attachments_present)",
    "AttachmentsExpected": "str(rec.attachments_expected)",
    "Edits": "str(rec.edits)",
    "FormVersion": "rec.form_version",
    "Status": '"deleted" if rec.deleted else ("" if rec.current else "superseded")',
}
_REPEAT_META_CODE = {"PARENT_KEY": "parent_key", "KEY": "key"}


def _group(node: Any) -> Mapping[str, Any]:
    """The group a generated row reads its fields from, when it is not a dict: absent, or not fast."""
    if node is None:
        return _NO_GROUP
    raise _NotFast


def _text_unchanged(raw: str) -> bool:
    """Tell (cheaply, no regex) that ``normalise_text`` would return ``raw`` unchanged.

    Printable text has no tabs, newlines or unusual spaces, so with no double space, no space at either
    end and already NFC, nothing is left to normalise. ``_RowBuilder._cells`` inlines the same test.
    """
    return (
        raw.isprintable()
        and "  " not in raw
        and raw.strip(" ") == raw
        and (raw.isascii() or unicodedata.is_normalized("NFC", raw))
    )


FastRows = Callable[[ExportRecord, Mapping[str, Any]], list[tuple[int, list[str]]]]


class _Slot:
    """One field read per row: where its value sits, how it is cleaned, which columns it fills."""

    __slots__ = (
        "allowed",
        "cells",
        "cols",
        "field",
        "header",
        "issue_key",
        "memo",
        "plain",
        "segs",
        "single",
        "step_keys",
        "text",
    )

    def __init__(self, table: TablePlan, prefix: int, first: Column, plan: ExportPlan, text: bool) -> None:
        self.field = plan.fields[first.path]
        self.segs = tuple(first.path[prefix:].split("/"))
        self.single = self.segs[0] if len(self.segs) == 1 else None
        self.header = first.header  # the report and _issues name a field by its first column
        self.issue_key: ReportKey = (table.file_name, first.header, "issue")
        self.step_keys: dict[str, ReportKey] = {}
        self.memo: dict[str, Cleaned] = {}
        self.cells: dict[str, str | tuple[str, ...]] = {}  # raw -> finished cell(s) of a plain outcome (fast path)
        self.text = text
        self.cols: list[Column] = [first]
        self.plain = False
        self.allowed: frozenset[str] | None = None

    def step_key(self, step: str) -> ReportKey:
        key = self.step_keys.get(step)
        if key is None:
            key = self.step_keys[step] = (self.issue_key[0], self.header, step)
        return key


@dataclass(frozen=True, slots=True)
class _Table:
    """A table compiled for writing rows: leading metadata, field slots, trailing metadata."""

    index: int
    plan: TablePlan
    head: tuple[str, ...]
    slots: tuple[_Slot, ...]
    hot: tuple[tuple[_Slot, str | None, bool, dict[str, Cleaned], bool], ...]  # what each row reads, unpacked
    tail: tuple[str, ...]
    issues_at: int
    keyed: bool  # the usual repeat layout: no leading metadata, then PARENT_KEY, KEY, _issues
    holder_segs: tuple[str, ...]  # where its instances sit relative to the parent row's values
    last: str
    rel: str


class _RowBuilder:
    def __init__(self, plan: ExportPlan, options: ExportOptions, fast: bool = True) -> None:
        self.plan = plan
        self.options = options
        self.allowed = {p: frozenset(c.name for c in cs) for p, cs in plan.choices.items()}
        self.labels = {p: {c.name: self._label(c.labels, c.name) for c in cs} for p, cs in plan.choices.items()}
        self.tables = [self._compile(i, t) for i, t in enumerate(plan.tables)]
        self.children: dict[str | None, list[_Table]] = {}
        for t in self.tables:
            if t.plan.repeat_path is not None:
                self.children.setdefault(t.plan.parent_repeat, []).append(t)
        root = self.tables[0]
        by_path = {s.cols[0].path: s for s in root.slots}
        self.field_equals = [(by_path[path], wanted) for path, wanted in options.field_equals]
        self.clean = options.clean
        # The generated rows (the filter on field values needs the general path's cleaned values).
        self.general_rows = 0  # submissions the generated rows left to the general path
        self.fast_rows: FastRows | None = None
        if fast and not self.field_equals:
            try:
                self.fast_rows = self._compile_fast()
            except (SyntaxError, RecursionError):  # Python nests at most 20 loops: repeats nested 21 deep
                self.fast_rows = None

    def _label(self, labels: Mapping[str, str], name: str) -> str:
        for key in (self.plan.lang, self.plan.default_language, "", "default"):
            if key is not None and labels.get(key):
                return labels[key]
        return name

    def _compile(self, index: int, table: TablePlan) -> _Table:
        prefix = 0 if table.repeat_path is None else len(table.repeat_path) + 1
        head: list[str] = []
        tail: list[str] = []
        slots: list[_Slot] = []
        labelled = self.options.labels == "labels"
        for col in table.columns:
            if col.kind == "meta":
                (tail if slots else head).append(col.path)
                continue
            if tail:
                raise AssertionError(f"{table.file_name}: field column {col.header!r} after the metadata columns")
            if slots and slots[-1].cols[0].path == col.path:
                slots[-1].cols.append(col)
                continue
            if any(s.cols[0].path == col.path for s in slots):
                raise AssertionError(f"{table.file_name}: the columns of {col.path!r} are not side by side")
            field = self.plan.fields[col.path]
            text = field.bind_type not in _TYPED_BINDS and field.control not in _CHOICE_CONTROLS
            slots.append(_Slot(table, prefix, col, self.plan, text))
        for s in slots:
            s.allowed = self.allowed.get(s.cols[0].path)
            only = s.cols[0]
            s.plain = len(s.cols) == 1 and only.kind == "value" and not (labelled and only.path in self.labels)
        if table.repeat_path is None:
            holder: tuple[str, ...] = ()
            last = rel = ""
        else:
            parent = table.parent_repeat
            rel = table.repeat_path if parent is None else table.repeat_path[len(parent) + 1 :]
            parent_rel, _, last = rel.rpartition("/")
            holder = tuple(parent_rel.split("/")) if parent_rel else ()
        hot = tuple((s, s.single, s.text, s.memo, s.plain) for s in slots)
        issues_at = table.headers.index(ISSUES_COLUMN)
        keyed = not head and tuple(tail) == (*REPEAT_META_AFTER, ISSUES_COLUMN)
        return _Table(index, table, tuple(head), tuple(slots), hot, tuple(tail), issues_at, keyed, holder, last, rel)

    def _compile_fast(self) -> FastRows:
        """Generate ``rows(rec, ctx)``: a submission's rows, in the order of the general path, as straight code.

        Per table, one constant-key read per field; each field's cells come from ``_Slot.cells`` (raw value
        -> finished cell, or cells, of a value cleaning leaves alone), and a miss calls ``_fill``, which
        raises ``_NotFast`` when the row needs the general path. Repeat tables are loops inlined where their
        parent's row is made (nested repeats nest), so a submission is one call.
        """
        env: dict[str, Any] = {
            "_utc_iso": _utc_iso,
            "_group": _group,
            "_is_normalized": unicodedata.is_normalized,
            "_NotFast": _NotFast,
        }
        code: list[str] = []
        root = self.tables[0]
        cells = self._fast_fields(root, "ctx", env, code, "    ")
        head = [_ROOT_META_CODE.get(name, '""') for name in root.head]
        tail = [_ROOT_META_CODE.get(name, '""') for name in root.tail]
        code.append(f"    out = [(0, [{', '.join([*head, *cells, *tail])}])]")
        self._fast_children(None, "ctx", "rec.instance_id", env, code, "    ")
        code.append("    return out")
        source = "def rows(rec, ctx):\n" + "".join(f"{line}\n" for line in code)
        # Nothing from the form reaches the code but field names, each written as a repr() string literal.
        exec(compile(source, f"<export rows: {root.plan.file_name}>", "exec"), env)
        rows: FastRows = env["rows"]
        return rows

    def _fast_children(
        self, parent: str | None, ctx: str, parent_key: str, env: dict[str, Any], code: list[str], indent: str
    ) -> None:
        """The loops making the rows of the repeat tables whose parent is ``parent`` (``_repeat_rows``)."""
        for table in self.children.get(parent, ()):
            t = table.index
            holder = self._fast_holder(ctx, table.holder_segs, f"h{t}_", code, indent, {})
            env[f"K{t}"] = f"/{table.rel}["
            code.append(f"{indent}found{t} = {holder}.get({table.last!r})")
            code.append(f"{indent}if type(found{t}) is list:")
            code.append(f"{indent}    for n{t}, inst{t} in enumerate(found{t}, 1):")
            inner = indent + "        "
            # Anything but a dict (a Mapping of another type, a stray value skipped in the numbering): general.
            code.append(f"{inner}if type(inst{t}) is not dict: raise _NotFast")
            code.append(f'{inner}key{t} = f"{{{parent_key}}}{{K{t}}}{{n{t}}}]"')
            cells = self._fast_fields(table, f"inst{t}", env, code, inner)
            if table.keyed:
                head, tail = [], [parent_key, f"key{t}", '""']
            else:
                meta = {"PARENT_KEY": parent_key, "KEY": f"key{t}"}
                head = [meta.get(name, '""') for name in table.head]
                tail = [meta.get(name, '""') for name in table.tail]
            code.append(f"{inner}out.append(({t}, [{', '.join([*head, *cells, *tail])}]))")
            self._fast_children(table.plan.repeat_path, f"inst{t}", f"key{t}", env, code, inner)
            code.append(f"{indent}elif found{t} is not None: raise _NotFast")

    @staticmethod
    def _fast_holder(
        ctx: str, segs: tuple[str, ...], prefix: str, code: list[str], indent: str, groups: dict[tuple[str, ...], str]
    ) -> str:
        """The variable holding the group ``segs`` of ``ctx``, read (once) by code appended to ``code``."""
        holder = ctx
        for depth in range(1, len(segs) + 1):
            key = segs[:depth]
            if key not in groups:
                name = groups[key] = f"{prefix}{len(groups)}"
                code.append(f"{indent}{name} = {holder}.get({key[-1]!r})")
                code.append(f"{indent}if type({name}) is not dict: {name} = _group({name})")
            holder = groups[key]
        return holder

    def _fast_fields(self, table: _Table, ctx: str, env: dict[str, Any], code: list[str], indent: str) -> list[str]:
        """Append the code reading ``table``'s fields from ``ctx``; return the expressions of their cells."""
        t = table.index
        groups: dict[tuple[str, ...], str] = {}
        cells: list[str] = []
        for j, slot in enumerate(table.slots):
            holder = self._fast_holder(ctx, slot.segs[:-1], f"g{t}_", code, indent, groups)
            r, v, m, f = f"r{t}_{j}", f"v{t}_{j}", f"m{t}_{j}", f"f{t}_{j}"
            env[m] = slot.cells
            env[f] = partial(self._fill, slot)
            code.append(f"{indent}{r} = {holder}.get({slot.segs[-1]!r})")
            if slot.text and slot.plain and self.clean:
                code.append(
                    f"{indent}if type({r}) is str and {r}.isprintable() and '  ' not in {r} and {r}.strip(' ') == {r}"
                    f" and ({r}.isascii() or _is_normalized('NFC', {r})): {v} = {r}"
                )
                code.append(f"{indent}else: {v} = {f}({r})")
            elif slot.text and slot.plain:
                code.append(f"{indent}{v} = {r} if type({r}) is str else {f}({r})")
            else:  # unhashable values (a group where a value was expected) raise TypeError: the general path
                code.append(f"{indent}{v} = {m}.get({r})")
                code.append(f"{indent}if {v} is None: {v} = {f}({r})")
            cells.append(v if slot.plain else f"*{v}")
        return cells

    def _fill(self, slot: _Slot, raw: Any) -> str | tuple[str, ...]:
        """The cells of ``raw`` for the generated row, remembered; ``_NotFast`` when cleaning changes or flags it."""
        if raw is None:
            got = Cleaned("")
        elif type(raw) is not str:
            raise _NotFast
        elif slot.text and (not self.clean or _text_unchanged(raw)):
            got = Cleaned(raw)
        else:
            got = slot.memo.get(raw) or clean_value(raw, slot.field, slot.allowed, self.clean)
            if got.steps or got.issue is not None:
                raise _NotFast
        if slot.plain:
            out: str | tuple[str, ...] = got.value
        else:
            emitted: list[str] = []
            self._emit(slot, got, emitted)
            out = tuple(emitted)
        if not (slot.text and slot.plain):  # free text rarely repeats: not remembered
            _remember(slot.cells, raw, out)
        return out

    def exclusion(self, rec: ExportRecord) -> str | None:
        o = self.options
        state = rec.review_state or "received"
        if not rec.current and not o.include_edits:
            return "superseded_edit"
        if rec.deleted and not o.include_deleted:
            return "deleted"
        if state == "rejected" and not (o.include_rejected or "rejected" in o.review_states):
            return "rejected"
        if (o.since and rec.submission_date < o.since) or (o.until and rec.submission_date >= o.until):
            return "filtered:date"
        if o.review_states and state not in o.review_states:
            return "filtered:review_state"
        if o.versions and rec.form_version not in o.versions:
            return "filtered:version"
        if o.submitters and rec.submitter not in o.submitters:
            return "filtered:submitter"
        return None

    def _emit(self, slot: _Slot, got: Cleaned, cells: list[str]) -> None:
        """The cells of a field that is not one plain column: geopoint parts, choice flags, labels."""
        names = got.value.split() if got.value else []
        for col in slot.cols:
            if col.kind == "geo_part":
                parts = names if got.issue is None else []
                cells.append(parts[col.part] if col.part < len(parts) else "")
            elif col.kind == "choice_flag":
                cells.append("" if got.value == "" else ("1" if col.choice in names else "0"))
            elif self.options.labels == "labels" and col.path in self.labels and got.issue is None and got.value:
                labels = self.labels[col.path]
                if slot.field.control == "select_one":
                    cells.append(labels.get(got.value, got.value))
                else:
                    cells.append(LABEL_JOIN.join(labels.get(n, n) for n in names))
            else:
                cells.append(got.value)

    def _clean(self, slot: _Slot, raw: str) -> Cleaned:
        """Clean ``raw`` for ``slot`` and remember it (the memo is emptied when full: memory stays flat)."""
        got = clean_value(raw, slot.field, slot.allowed, self.clean)
        _remember(slot.memo, raw, got)
        return got

    def _cells(
        self,
        table: _Table,
        ctx: Mapping[str, Any],
        cells: list[str],
        tail: list[str],
        changes: list[ReportKey],
        values: list[str] | None = None,
    ) -> list[str]:
        """The row of ``table`` for the values ``ctx``: ``cells`` (the leading metadata), fields, ``tail``."""
        issues: list[str] = []
        clean = self.clean
        for slot, single, text, memo, plain in table.hot:
            raw = ctx.get(single) if single is not None else _lookup(ctx, slot.segs)
            got: Cleaned | None = None
            if type(raw) is str:
                if text and (
                    # The common case, tested cheaply (no regex): printable text has no tabs, newlines or
                    # unusual spaces, so with no double space, no space at either end and already NFC,
                    # normalise_text would return it unchanged.
                    not clean
                    or (
                        raw.isprintable()
                        and "  " not in raw
                        and raw.strip(" ") == raw
                        and (raw.isascii() or unicodedata.is_normalized("NFC", raw))
                    )
                ):
                    value = raw
                else:
                    got = memo.get(raw) or self._clean(slot, raw)
                    value = got.value
            elif raw is None:
                value = ""
            elif isinstance(raw, str):
                got = self._clean(slot, raw)
                value = got.value
            else:
                got = _NOT_A_VALUE
                value = ""
            if got is not None and (got.steps or got.issue is not None):
                for step in got.steps:
                    changes.append(slot.step_key(step))
                if got.issue is not None:
                    shown = raw if isinstance(raw, str) else ""
                    issues.append(f"{slot.header}: {got.issue} ({shown!r})")
                    changes.append(slot.issue_key)
            if values is not None:
                values.append(value)
            if plain:
                cells.append(value)
            else:
                self._emit(slot, got if got is not None else Cleaned(value), cells)
        cells += tail
        if issues:
            cells[table.issues_at] = " | ".join(issues)
        return cells

    def _repeat_rows(
        self,
        parent_repeat: str | None,
        ctx: Mapping[str, Any],
        parent_key: str,
        changes: list[ReportKey],
        out: list[tuple[int, list[str]]],
    ) -> None:
        for table in self.children.get(parent_repeat, ()):
            for n, instance in enumerate(_instances(ctx, table.holder_segs, table.last), start=1):
                key = f"{parent_key}/{table.rel}[{n}]"
                if table.keyed:
                    head, tail = [], [parent_key, key, ""]
                else:
                    meta = {"PARENT_KEY": parent_key, "KEY": key}
                    head = [meta.get(name, "") for name in table.head]
                    tail = [meta.get(name, "") for name in table.tail]
                out.append((table.index, self._cells(table, instance, head, tail, changes)))
                self._repeat_rows(table.plan.repeat_path, instance, key, changes, out)

    def rows(self, rec: ExportRecord, report: CleaningReport) -> list[tuple[int, list[str]]]:
        reason = self.exclusion(rec)
        if reason is not None:
            report.exclude(reason)
            return []
        if self.fast_rows is not None:
            ctx = rec.values if type(rec.values) is dict or isinstance(rec.values, Mapping) else {}
            try:
                return self.fast_rows(rec, ctx)
            except (_NotFast, TypeError):  # TypeError: an unhashable value (a group) looked up in a memo
                self.general_rows += 1  # built again below, with its steps and issues counted
        meta = {
            "SubmissionDate": _utc_iso(rec),
            "KEY": rec.instance_id,
            "SubmitterID": rec.submitter,
            "DeviceID": rec.device_id,
            "ReviewState": rec.review_state or "",
            "AttachmentsPresent": str(rec.attachments_present),
            "AttachmentsExpected": str(rec.attachments_expected),
            "Edits": str(rec.edits),
            "FormVersion": rec.form_version,
            "Status": "deleted" if rec.deleted else ("" if rec.current else "superseded"),
        }
        changes: list[ReportKey] = []
        root_table = self.tables[0]
        data: Mapping[str, Any] = rec.values if type(rec.values) is dict or isinstance(rec.values, Mapping) else {}
        head = [meta.get(name, "") for name in root_table.head]
        tail = [meta.get(name, "") for name in root_table.tail]
        if self.field_equals:
            values: list[str] = []
            root = self._cells(root_table, data, head, tail, changes, values)
            slots = root_table.slots
            for slot, wanted in self.field_equals:
                if values[slots.index(slot)] != wanted:
                    report.exclude("filtered:field")
                    return []
        else:
            root = self._cells(root_table, data, head, tail, changes)
        out = [(0, root)]
        if len(self.tables) > 1:
            self._repeat_rows(None, data, rec.instance_id, changes, out)
        if changes:  # counted only for exported rows
            report.changes.update(changes)
        return out


def row_builder(plan: ExportPlan, options: ExportOptions, *, fast: bool = True) -> _RowBuilder:
    """The compiled rows of ``plan``: ``builder.rows(record, report)`` gives one submission's rows.

    ``fast=False`` leaves out the generated row code (the general path alone, which the tests compare with).
    """
    return _RowBuilder(plan, options, fast)


def export_rows(
    plan: ExportPlan,
    options: ExportOptions,
    records: Iterable[ExportRecord],
    report: CleaningReport,
    *,
    fast: bool = True,
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(table index, cells)`` for every exported row, reading ``records`` once."""
    builder = _RowBuilder(plan, options, fast)
    for rec in records:
        report.records_read += 1
        yield from builder.rows(rec, report)
