"""The CSV zip layout, golden-file style, one test per option.

Rules checked:
- L1 the zip holds ``coop.csv``, one CSV per repeat (nested too), ``cleaning_report.csv``, ``README.txt``.
- L2 root columns: SubmissionDate, data in form order, then KEY … FormVersion, _issues.
- L3 repeat KEY is ``<parent KEY>/<path>[n]``; PARENT_KEY the instanceID or the parent row's KEY.
- L4 each option changes exactly what it says (headers, labels, splits, BOM).
- L5 ``iter_csv_zip`` yields the same zip as ``write_csv_zip``; bad options fail before any byte.
- L6 ``csv_line`` formats a row exactly as ``csv.writer`` does (quoting, doubled quotes, line breaks).
"""

from __future__ import annotations

import csv
import io
import zipfile

import pytest

from exports.csv_zip import csv_line, iter_csv_zip, write_csv_zip
from exports.options import ExportOptionError, ExportOptions
from tests.exports.coop_fixture import SCHEMAS, coop_values, export_files, record, table_dicts

ONE = [record("uuid:c1", coop_values("uuid:c1"), submitter="coach1", device_id="collect:AbC", edits=1)]

ROOT_DEFAULT = """\
SubmissionDate,coop_name,phone,region,activities,founded,location-Latitude,location-Longitude,\
location-Altitude,location-Accuracy,revenue,meta-instanceID,KEY,SubmitterID,DeviceID,ReviewState,\
AttachmentsPresent,AttachmentsExpected,Edits,FormVersion,_issues
2024-05-02T10:00:00.000Z,Coopérative Tifawin,,r1,agri craft,2019-03-08,30.4278,-9.5981,74,5.0,125000.5,\
uuid:c1,uuid:c1,coach1,collect:AbC,,0,0,1,2,
"""

MEMBERS = """\
name,age,joined,PARENT_KEY,KEY,_issues
Fatima,42,2020-01-15T09:30:00.000+01:00,uuid:c1,uuid:c1/details/members[1],
Youssef,35,2021-06-01T14:00:00.000+01:00,uuid:c1,uuid:c1/details/members[2],
"""

CHILDREN = """\
child_name,PARENT_KEY,KEY,_issues
Amine,uuid:c1/details/members[1],uuid:c1/details/members[1]/children[1],
Salma,uuid:c1/details/members[1],uuid:c1/details/members[1]/children[2],
"""


def test_default_layout_is_odk_central_like() -> None:
    files = export_files(ONE)
    assert list(files) == ["coop.csv", "coop-members.csv", "coop-children.csv", "cleaning_report.csv", "README.txt"]
    assert files["coop.csv"] == ROOT_DEFAULT
    assert files["coop-members.csv"] == MEMBERS
    assert files["coop-children.csv"] == CHILDREN
    assert files["cleaning_report.csv"] == "table,column,step,count\n"


def test_keys_link_every_repeat_row_to_its_parent() -> None:
    recs = [record(f"uuid:{i}", coop_values(f"uuid:{i}")) for i in range(3)]
    files = export_files(recs)
    root_keys = {r["KEY"] for r in table_dicts(files["coop.csv"])}
    members = table_dicts(files["coop-members.csv"])
    member_keys = {r["KEY"] for r in members}
    assert {r["PARENT_KEY"] for r in members} == root_keys
    children = table_dicts(files["coop-children.csv"])
    assert {r["PARENT_KEY"] for r in children} <= member_keys
    assert all(r["KEY"].startswith(r["PARENT_KEY"] + "/children[") for r in children)
    assert len(member_keys) == len(members) == 6


HEADER_CASES = [
    (ExportOptions(group_paths=False), "coop.csv", ["instanceID"], ["meta-instanceID"]),
    (ExportOptions(separator="/"), "coop.csv", ["meta/instanceID"], ["meta-instanceID"]),
    (
        ExportOptions(split_geopoint=False),
        "coop.csv",
        ["location"],
        ["location-Latitude", "location-Accuracy"],
    ),
    (
        ExportOptions(split_select_multiple=True),
        "coop.csv",
        ["activities", "activities/agri", "activities/craft", "activities/other"],
        [],
    ),
    (ExportOptions(headers="labels", lang="fr"), "coop-members.csv", ["Nom du membre", "Âge"], ["name"]),
    (ExportOptions(headers="labels", lang="ar"), "coop.csv", ["الاسم", "الجهة", "الموقع-Latitude"], ["coop_name"]),
    (ExportOptions(include_deleted=True), "coop.csv", ["Status"], []),
]


@pytest.mark.parametrize(
    ("options", "table", "present", "absent"),
    HEADER_CASES,
    ids=[
        "no-group-paths",
        "slash-separator",
        "geopoint-kept",
        "split-select-multiple",
        "fr-headers",
        "ar-headers",
        "status",
    ],
)
def test_header_options(options: ExportOptions, table: str, present: list[str], absent: list[str]) -> None:
    header = export_files(ONE, options)[table].splitlines()[0].split(",")
    assert [h for h in present if h not in header] == []
    assert [h for h in absent if h in header] == []
    assert len(header) == len(set(header))


def test_split_select_multiple_lists_every_choice_with_0_1_cells() -> None:
    row = table_dicts(export_files(ONE, ExportOptions(split_select_multiple=True))["coop.csv"])[0]
    assert (row["activities"], row["activities/agri"], row["activities/craft"], row["activities/other"]) == (
        "agri craft",
        "1",
        "1",
        "0",  # "other" was chosen by nobody and still has its column
    )


@pytest.mark.parametrize(
    ("lang", "region", "activities"),
    [
        ("fr", "Souss-Massa", "Agriculture; Artisanat"),
        ("ar", "سوس ماسة", "الفلاحة; الصناعة التقليدية"),
        (None, "Souss-Massa", "Agriculture; Artisanat"),  # default language
    ],
    ids=["french", "arabic", "default-language"],
)
def test_labels_mode_writes_choice_labels(lang: str | None, region: str, activities: str) -> None:
    row = table_dicts(export_files(ONE, ExportOptions(labels="labels", lang=lang))["coop.csv"])[0]
    assert (row["region"], row["activities"]) == (region, activities)
    assert row["coop_name"] == "Coopérative Tifawin"  # free text is never translated


def test_bom_option_prefixes_every_csv() -> None:
    files = export_files(ONE, ExportOptions(bom=True))
    assert all(files[n].startswith("\ufeffSubmissionDate") for n in ["coop.csv"])
    assert files["coop-members.csv"].startswith("\ufeffname,")
    assert not export_files(ONE)["coop.csv"].startswith("\ufeff")


def test_unknown_language_is_an_option_error() -> None:
    with pytest.raises(ExportOptionError) as err:
        export_files(ONE, ExportOptions(lang="de"))
    assert err.value.field == "lang"


def test_iter_csv_zip_streams_the_same_zip_and_reports_summary() -> None:
    summaries = []
    chunks = list(iter_csv_zip(SCHEMAS, ONE, ExportOptions(), on_done=summaries.append))
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as zf:
        assert zf.read("coop.csv").decode().replace("\r\n", "\n") == ROOT_DEFAULT
        assert zf.testzip() is None
    assert summaries[0].records_exported == 1
    assert [t.rows for t in summaries[0].tables] == [1, 2, 2]


def test_iter_csv_zip_rejects_bad_options_before_reading_records() -> None:
    def never() -> list[object]:
        raise AssertionError("records must not be read")

    with pytest.raises(ExportOptionError):
        iter_csv_zip(SCHEMAS, iter(never, None), ExportOptions(geojson_field="coop_name"))  # type: ignore[arg-type]


def test_write_csv_zip_to_a_non_seekable_stream() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            self.data += b
            return len(b)

    pipe = Pipe()
    write_csv_zip(SCHEMAS, ONE, ExportOptions(), pipe)  # type: ignore[arg-type]
    with zipfile.ZipFile(io.BytesIO(bytes(pipe.data))) as zf:
        assert zf.read("coop-children.csv").decode().replace("\r\n", "\n") == CHILDREN


CSV_CELLS = [
    ("plain", ["a", "b", ""]),
    ("comma", ["a,b", "c"]),
    ("quote", ['say "hi"', '"']),
    ("line breaks", ["a\nb", "c\rd", "e\r\nf"]),
    ("spaces and tabs", [" a ", "\tb"]),
    ("arabic and french", ["تعاونية, الأمل", "Drâa"]),
    ("lone cell", [""]),
    ("empty cells", ["", ""]),
]


@pytest.mark.parametrize("cells", [c for _, c in CSV_CELLS], ids=[i for i, _ in CSV_CELLS])
def test_csv_line_writes_what_csv_writer_writes(cells: list[str]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(cells)
    assert csv_line(cells) + "\r\n" == buf.getvalue()
