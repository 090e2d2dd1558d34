"""Generated rows and column-wise CSV: the same bytes as the straightforward path, on random records and options.

Rules checked:
- F1 the rows (and the cleaning report) of ``export_rows`` with the generated row code are those of the
  general path alone (``fast=False``), whatever the records hold (messy, missing, misplaced or non-text
  values, groups sent as lists, superseded or deleted versions) and whatever the options.
- F2 every CSV of the zip is, byte for byte, the header and rows of the general path each escaped by
  ``neutralise_row`` and formatted by ``csv_line``, and ``cleaning_report.csv`` counts the same escapes.
- F3 ``csv_lines`` (column by column) gives what ``neutralise_row`` + ``csv_line`` give row by row.
- F4 a clean submission is built by the generated code, not handed back to the general path; a form whose
  repeats nest too deep for one generated function is exported by the general path alone.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exports.cleaning import CleaningReport
from exports.csv_zip import csv_line, csv_lines, report_csv, write_csv_zip
from exports.options import ExportOptions
from exports.records import ExportRecord
from exports.rows import export_rows, row_builder
from exports.spreadsheet_formulas import STEP as FORMULA_STEP
from exports.spreadsheet_formulas import neutralise, neutralise_row, numeric_columns
from exports.tables import plan_tables
from forms.schema import Field, FormSchema
from tests.exports.coop_fixture import SCHEMAS, coop_values, record

# Leaves chosen to reach every branch: clean and canonical values of each type, values cleaning changes
# (spaces, NFD, decimal commas, short dates), values it flags, CSV specials and formula triggers.
LEAVES = [
    "",
    "Coopérative Tifawin",
    "تعاونية الأمل",
    "Coope\u0301rative",  # NFD
    " padded ",
    "two  spaces",
    "line\nbreak",
    "tab\there",
    'say "hi", twice',
    "a,b",
    "=1+1",
    "-5",
    "+212 600",
    "@SUM(A1)",
    "\t=cmd",
    "r1",
    "r2",
    "r9",
    "agri craft",
    "agri  other",
    "agri nope",
    "42",
    "+042",
    "1,5",
    "1,250",
    "125000.5",
    "2019-03-08",
    "2019-3-8",
    "not a date",
    "2020-01-15T09:30:00.000+01:00",
    "2020-01-15T09:30:00+01",
    "09:30:00",
    "30.4278 -9.5981 74 5.0",
    "-30.4  9.5 0 1",
    "30.4278",
]
leaf = st.sampled_from(LEAVES)
odd = st.one_of(st.none(), st.integers(-3, 3), st.just({"x": "1"}), st.just(["a"]))
value = st.one_of(leaf, leaf, leaf, odd)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, strategy, strategy, odd)


child = st.fixed_dictionaries({}, optional={"child_name": value})
member = st.fixed_dictionaries(
    {},
    optional={
        "name": value,
        "age": value,
        "joined": value,
        "children": _maybe(st.one_of(st.lists(child, max_size=3), child)),
    },
)
details = st.fixed_dictionaries({}, optional={"members": _maybe(st.lists(member, max_size=3))})
values = st.fixed_dictionaries(
    {},
    optional={
        "coop_name": value,
        "phone": value,
        "region": value,
        "activities": value,
        "founded": value,
        "location": value,
        "revenue": value,
        "details": _maybe(st.one_of(details, st.lists(details, min_size=1, max_size=2))),
        "meta": _maybe(st.fixed_dictionaries({}, optional={"instanceID": value})),
        "formhub": st.just({"uuid": "x"}),
    },
)


@st.composite
def records(draw: st.DrawFn) -> ExportRecord:
    n = draw(st.integers(0, 10_000))
    return record(
        f"uuid:{n}",
        draw(values),
        form_version=draw(st.sampled_from(["1", "2", "3"])),
        submission_date=datetime(2024, 5, 2, tzinfo=UTC) + timedelta(seconds=draw(st.integers(-(10**9), 10**9))),
        submitter=draw(st.sampled_from(["", "alice", "=bob"])),
        review_state=draw(st.sampled_from([None, "approved", "rejected", "hasIssues"])),
        attachments_present=draw(st.integers(0, 2)),
        edits=draw(st.integers(0, 2)),
        deleted=draw(st.booleans()),
        current=draw(st.booleans()),
    )


options = st.builds(
    ExportOptions,
    labels=st.sampled_from(["values", "labels"]),
    lang=st.sampled_from([None, "ar"]),
    headers=st.sampled_from(["names", "labels"]),
    group_paths=st.booleans(),
    split_select_multiple=st.booleans(),
    split_geopoint=st.booleans(),
    field_equals=st.sampled_from([(), (("region", "r1"),)]),
    include_edits=st.booleans(),
    include_deleted=st.booleans(),
    include_rejected=st.booleans(),
    bom=st.booleans(),
    clean=st.booleans(),
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rows(recs: list[ExportRecord], opts: ExportOptions, fast: bool) -> tuple[list[Any], CleaningReport]:
    report = CleaningReport()
    plan = plan_tables(SCHEMAS, opts)
    return list(export_rows(plan, opts, recs, report, fast=fast)), report


@SETTINGS
@given(st.lists(records(), max_size=8), options)
def test_generated_rows_are_the_general_paths(recs: list[ExportRecord], opts: ExportOptions) -> None:
    fast_rows, fast_report = _rows(recs, opts, fast=True)
    slow_rows, slow_report = _rows(recs, opts, fast=False)
    assert fast_rows == slow_rows
    assert fast_report.changes == slow_report.changes
    assert fast_report.excluded == slow_report.excluded
    assert fast_report.records_read == slow_report.records_read


def _straightforward_zip(recs: list[ExportRecord], opts: ExportOptions) -> dict[str, bytes]:
    """The CSVs and report as the general path with a row-by-row writer would make them."""
    plan = plan_tables(SCHEMAS, opts)
    report = CleaningReport()
    lines: list[list[str]] = [[csv_line([neutralise(h) for h in t.headers])] for t in plan.tables]
    numeric = [numeric_columns(t, plan.fields) for t in plan.tables]
    escaped: list[Counter[int]] = [Counter() for _ in plan.tables]
    for index, cells in export_rows(plan, opts, recs, report, fast=False):
        neutralise_row(cells, numeric[index], escaped[index])
        lines[index].append(csv_line(cells))
    for table, counts in zip(plan.tables, escaped, strict=True):
        for i, n in counts.items():
            report.changes[(table.file_name, table.columns[i].header, FORMULA_STEP)] += n
    bom = "\ufeff" if opts.bom else ""
    files = {
        t.file_name: (bom + "".join(f"{line}\r\n" for line in ls)).encode()
        for t, ls in zip(plan.tables, lines, strict=True)
    }
    files["cleaning_report.csv"] = report_csv(report, opts)
    return files


@SETTINGS
@given(st.lists(records(), max_size=8), options)
def test_zip_tables_are_the_straightforward_bytes(recs: list[ExportRecord], opts: ExportOptions) -> None:
    buf = io.BytesIO()
    write_csv_zip(SCHEMAS, recs, opts, buf)
    expected = _straightforward_zip(recs, opts)
    with zipfile.ZipFile(buf) as zf:
        got = {name: zf.read(name) for name in expected}
    assert got == expected


cell = st.one_of(st.sampled_from(LEAVES), st.text(alphabet=st.sampled_from(list(",\"\r\n =+-@\t'a1.;é")), max_size=6))
SHAPES: list[re.Pattern[str] | None] = [None, re.compile(r"[+-]?\d+(\.\d*)?"), re.compile(r"[\d.\- ;]+")]  # none: text


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda w: st.tuples(
            st.lists(st.lists(cell, min_size=w, max_size=w), max_size=6),
            st.lists(st.sampled_from(SHAPES), min_size=w, max_size=w),
        )
    )
)
def test_csv_lines_are_row_by_row_lines(case: tuple[list[list[str]], list[re.Pattern[str] | None]]) -> None:
    rows, shapes = case
    numeric = {i: s for i, s in enumerate(shapes) if s is not None}
    expected_escaped: Counter[int] = Counter()
    expected = []
    for row in rows:
        cells = list(row)
        neutralise_row(cells, numeric, expected_escaped)
        expected.append(csv_line(cells))
    escaped: Counter[int] = Counter()
    assert csv_lines([list(r) for r in rows], numeric, escaped) == expected
    assert escaped == expected_escaped


def test_clean_submissions_take_the_generated_rows() -> None:
    opts = ExportOptions()
    builder = row_builder(plan_tables(SCHEMAS, opts), opts)
    report = CleaningReport()
    for n in range(3):
        rows = builder.rows(record(f"uuid:{n}", coop_values(f"uuid:{n}")), report)
        assert len(rows) == 5  # the submission, two members, two children
    assert builder.general_rows == 0
    messy = coop_values("uuid:9", coop_name=" Coop  Tifawin ")
    builder.rows(record("uuid:9", messy), report)
    assert builder.general_rows == 1


def test_repeats_nested_beyond_pythons_block_limit_take_the_general_path() -> None:
    depth = 21  # one loop per repeat: past the 20 nested blocks Python compiles in one function
    paths = ["/".join(f"r{i}" for i in range(d + 1)) for d in range(depth)]
    fields = [Field(p, p.rsplit("/", 1)[-1], "repeat", repeat=paths[i - 1] if i else None) for i, p in enumerate(paths)]
    fields.append(Field(f"{paths[-1]}/leaf", "leaf", "question", "string", "input", repeat=paths[-1]))
    schema = FormSchema(form_id="deep", version="1", title="Deep", fields=tuple(fields))
    values: dict[str, Any] = {"leaf": "x"}
    for i in reversed(range(depth)):
        values = {f"r{i}": [values]}
    opts = ExportOptions()
    builder = row_builder(plan_tables([schema], opts), opts)
    assert builder.fast_rows is None
    rows = builder.rows(record("uuid:d", values), CleaningReport())
    assert rows[-1][1][0] == "x"
