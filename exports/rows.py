"""Records to table rows: filtering, cleaning, keys, labels — shared by every export format.

``export_rows(plan, options, records, report)`` reads the records once and yields
``(table index, cells)`` pairs: a submission's root row first, then its repeat rows depth-first. It
holds one submission at a time, so every writer built on it streams.

Keys follow ODK Central: the root ``KEY`` is the instanceID; a repeat row's ``KEY`` is its parent's
``KEY`` + ``/<path of the repeat relative to the parent table>[n]`` (n 1-based), and its ``PARENT_KEY``
is the parent's ``KEY``. Values the forms do not know (``formhub/uuid``, fields of no version) are not
exported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from exports.cleaning import Cleaned, CleaningReport, ReportKey, clean_value
from exports.options import ExportOptions
from exports.records import ExportRecord
from exports.tables import ISSUES_COLUMN, ExportPlan, TablePlan

LABEL_JOIN = "; "  # select_multiple labels can contain spaces, so labels are joined with "; "


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


def _lookup(ctx: Mapping[str, Any], rel: str) -> Any:
    node: Any = ctx
    for seg in rel.split("/"):
        if isinstance(node, list):  # a group sent twice: read the first, as devices never do this
            node = node[0] if node else None
        if not isinstance(node, Mapping):
            return None
        node = node.get(seg)
    return node


def _instances(ctx: Mapping[str, Any], rel: str) -> list[Mapping[str, Any]]:
    parent_rel, _, last = rel.rpartition("/")
    holder = _lookup(ctx, parent_rel) if parent_rel else ctx
    if not isinstance(holder, Mapping):
        return []
    found = holder.get(last)
    if isinstance(found, Mapping):
        return [found]
    if isinstance(found, list):
        return [i for i in found if isinstance(i, Mapping)]
    return []


def _utc_iso(rec: ExportRecord) -> str:
    return rec.submission_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _RowBuilder:
    def __init__(self, plan: ExportPlan, options: ExportOptions) -> None:
        self.plan = plan
        self.options = options
        self.children: dict[str | None, list[int]] = {}
        for i, t in enumerate(plan.tables):
            if t.repeat_path is not None:
                self.children.setdefault(t.parent_repeat, []).append(i)
        self.allowed = {p: frozenset(c.name for c in cs) for p, cs in plan.choices.items()}
        self.labels = {p: {c.name: self._label(c.labels, c.name) for c in cs} for p, cs in plan.choices.items()}

    def _label(self, labels: Mapping[str, str], name: str) -> str:
        for key in (self.plan.lang, self.plan.default_language, "", "default"):
            if key is not None and labels.get(key):
                return labels[key]
        return name

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

    def _cells(
        self,
        table: TablePlan,
        ctx: Mapping[str, Any],
        meta: Mapping[str, str],
        changes: list[ReportKey],
        cleaned_out: dict[str, Cleaned] | None = None,
    ) -> list[str]:
        cache: dict[str, Cleaned] = {} if cleaned_out is None else cleaned_out
        issues: list[str] = []
        cells: list[str] = []
        prefix = 0 if table.repeat_path is None else len(table.repeat_path) + 1
        for col in table.columns:
            if col.kind == "meta":
                cells.append(meta.get(col.path, ""))
                continue
            got = cache.get(col.path)
            if got is None:
                raw = _lookup(ctx, col.path[prefix:])
                field = self.plan.fields[col.path]
                if raw is None:
                    got = Cleaned("")
                elif not isinstance(raw, str):
                    got = Cleaned("", issue="a group or repeat where a value was expected")
                else:
                    got = clean_value(raw, field, self.allowed.get(col.path), self.options.clean)
                cache[col.path] = got
                for step in got.steps:
                    changes.append((table.file_name, col.header, step))
                if got.issue is not None:
                    shown = raw if isinstance(raw, str) else ""
                    issues.append(f"{col.header}: {got.issue} ({shown!r})")
                    changes.append((table.file_name, col.header, "issue"))
            if col.kind == "geo_part":
                parts = got.value.split() if got.issue is None else []
                cells.append(parts[col.part] if col.part < len(parts) else "")
            elif col.kind == "choice_flag":
                cells.append("" if got.value == "" else ("1" if col.choice in got.value.split() else "0"))
            elif self.options.labels == "labels" and col.path in self.labels and got.issue is None and got.value:
                names = self.labels[col.path]
                if self.plan.fields[col.path].control == "select_one":
                    cells.append(names.get(got.value, got.value))
                else:
                    cells.append(LABEL_JOIN.join(names.get(n, n) for n in got.value.split()))
            else:
                cells.append(got.value)
        if issues:
            cells[table.headers.index(ISSUES_COLUMN)] = " | ".join(issues)
        return cells

    def _repeat_rows(
        self, parent_repeat: str | None, ctx: Mapping[str, Any], parent_key: str, changes: list[ReportKey]
    ) -> Iterator[tuple[int, list[str]]]:
        for index in self.children.get(parent_repeat, ()):
            table = self.plan.tables[index]
            assert table.repeat_path is not None
            rel = table.repeat_path if parent_repeat is None else table.repeat_path[len(parent_repeat) + 1 :]
            for n, instance in enumerate(_instances(ctx, rel), start=1):
                key = f"{parent_key}/{rel}[{n}]"
                yield index, self._cells(table, instance, {"PARENT_KEY": parent_key, "KEY": key}, changes)
                yield from self._repeat_rows(table.repeat_path, instance, key, changes)

    def rows(self, rec: ExportRecord, report: CleaningReport) -> list[tuple[int, list[str]]]:
        reason = self.exclusion(rec)
        if reason is not None:
            report.exclude(reason)
            return []
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
        cleaned: dict[str, Cleaned] = {}
        root = self._cells(self.plan.tables[0], rec.values, meta, changes, cleaned)
        for path, wanted in self.options.field_equals:
            if cleaned[path].value != wanted:
                report.exclude("filtered:field")
                return []
        out = [(0, root), *self._repeat_rows(None, rec.values, rec.instance_id, changes)]
        for key in changes:  # counted only for exported rows
            report.changes[key] += 1
        return out


def export_rows(
    plan: ExportPlan, options: ExportOptions, records: Iterable[ExportRecord], report: CleaningReport
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(table index, cells)`` for every exported row, reading ``records`` once."""
    builder = _RowBuilder(plan, options)
    for rec in records:
        report.records_read += 1
        yield from builder.rows(rec, report)
