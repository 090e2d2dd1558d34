"""An exported XLSX and CSV opened by another spreadsheet: LibreOffice (headless) converts them to ODS.

Rules checked:
- L1 LibreOffice reads the XLSX's numbers as numbers, dates and datetimes as dates, text answers that
  look like numbers as text, Arabic text intact, the sheet right to left and filtered.
- L2 LibreOffice reads the CSV for Excel (``bom=true``) as UTF-8: Arabic intact, the BOM not glued to the
  first header, numbers as numbers.

LibreOffice starts slowly (5-10 s): both files are converted by two soffice processes started together,
each with its own profile directory, kept in pytest's cache (this is the only test that starts soffice,
so no other pytest-xdist worker shares them). Skipped
only where ``soffice`` is not installed; CI (``.ci/run`` sets FIELDSYNC_CI) installs it and fails
without it.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from exports.csv_zip import write_csv_zip
from exports.options import ExportOptions
from exports.xlsx import write_xlsx
from tests.exports.coop_fixture import SCHEMAS, coop_values, record

pytestmark = pytest.mark.slow

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
if SOFFICE is None and os.environ.get("FIELDSYNC_CI"):
    raise RuntimeError("CI must have LibreOffice: .ci/run installs libreoffice-calc (soffice not found)")
if SOFFICE is None:
    pytest.skip(reason="LibreOffice is not installed (soffice not found; .ci/run installs it)", allow_module_level=True)

NS = {
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "style": "urn:oasis:names:tc:opendocument:xmlns:style:1.0",
}
# A headless conversion has no import dialog to notice the BOM, as Excel and LibreOffice's dialog do, so
# the CSV's character set is named: comma, double quote, UTF-8 (76), from line 1.
CSV_FILTER = "CSV:44,34,76,1"
NAME = "تعاونية الأمل"


def _q(tag: str) -> str:
    prefix, _, local = tag.partition(":")
    return f"{{{NS[prefix]}}}{local}"


def _convert(sources: list[tuple[Path, str | None]], out: Path, profiles: Path) -> None:
    """Convert each (file, input filter) to ODS in ``out``, the soffice processes running side by side."""
    commands = []
    for i, (path, infilter) in enumerate(sources):
        profile = (profiles / f"profile{i}").as_uri()
        args = [SOFFICE or "soffice", f"-env:UserInstallation={profile}", "--headless", "--norestore"]
        args += [f"--infilter={infilter}"] if infilter else []
        args += ["--convert-to", "ods", "--outdir", str(out), str(path)]
        commands.append(args)
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for args in commands]
    for args, proc in zip(commands, procs, strict=True):
        output, _ = proc.communicate(timeout=180)
        code = proc.returncode
        if code != 0 and b"Fatal exception" in output:
            # soffice itself crashed while starting (seen once on a fresh profile, on a loaded machine: an
            # "Unspecified Application Error", signal 6, before it read the file): started again, alone. What
            # it then reads is checked as always; a file it cannot convert still fails here.
            again = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
            code, output = again.returncode, again.stdout
        assert code == 0, output.decode(errors="replace")


Cell = tuple[str, str]  # (office:value-type, the value LibreOffice holds: office:value/date-value or text)


def _sheets(ods: Path) -> tuple[dict[str, list[list[Cell]]], ElementTree.Element]:
    """Every table of an ODS file as rows of (type, value), and the content tree."""
    with zipfile.ZipFile(ods) as zf:
        root = ElementTree.fromstring(zf.read("content.xml"))  # a file LibreOffice just wrote
    sheets: dict[str, list[list[Cell]]] = {}
    for table in root.iter(_q("table:table")):
        rows = []
        for row in table.iter(_q("table:table-row")):
            cells: list[Cell] = []
            for cell in row.iter(_q("table:table-cell")):
                repeat = min(int(cell.get(_q("table:number-columns-repeated"), "1")), 64)
                kind = cell.get(_q("office:value-type"), "")
                value = cell.get(_q("office:value")) or cell.get(_q("office:date-value"))
                shown = "".join(p.text or "" for p in cell.iter(_q("text:p")))
                cells += [(kind, value if value is not None else shown)] * repeat
            if any(kind for kind, _ in cells):
                rows.append(cells)
        sheets[table.get(_q("table:name"), "")] = rows
    return sheets, root


def _by_header(rows: list[list[Cell]]) -> dict[str, Cell]:
    """The first data row, by the header row's texts."""
    return {h: cell for (_, h), cell in zip(rows[0], rows[1], strict=False) if h}


@pytest.fixture
def profiles(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LibreOffice profiles kept in pytest's cache: a fresh one costs seconds at every start.

    With the cache plugin off (``-p no:cacheprovider``) they live in this run's temporary folder.
    """
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("libreoffice-profiles")
    return Path(cache.mkdir("libreoffice-profiles"))


def test_libreoffice_opens_the_xlsx_and_the_csv_with_types_and_arabic(tmp_path: Path, profiles: Path) -> None:
    records = [record("uuid:a", coop_values("uuid:a", coop_name=NAME)), record("uuid:b", coop_values("uuid:b"))]
    old = record("uuid:c", {**coop_values("uuid:c"), "phone": "0612345678"}, form_version="1")
    options = ExportOptions(labels="labels", lang="ar", bom=True)
    xlsx = tmp_path / "coop.xlsx"
    with xlsx.open("wb") as out:
        write_xlsx(SCHEMAS, [*records, old], options, out)
    buf = io.BytesIO()
    write_csv_zip(SCHEMAS, records, options, buf)
    csv_path = tmp_path / "coop_csv.csv"
    csv_path.write_bytes(zipfile.ZipFile(buf).read("coop.csv"))

    _convert([(xlsx, None), (csv_path, CSV_FILTER)], tmp_path, profiles)

    sheets, content = _sheets(tmp_path / "coop.ods")
    assert list(sheets) == ["coop", "coop-members", "coop-children", "cleaning_report"]
    root = _by_header(sheets["coop"])
    assert root["SubmissionDate"] == ("date", "2024-05-02T10:00:00")
    assert root["founded"] == ("date", "2019-03-08")
    assert root["revenue"] == ("float", "125000.5")
    assert root["location-Latitude"] == ("float", "30.4278")
    assert root["Edits"] == ("float", "0")
    assert root["coop_name"] == ("string", NAME)
    assert root["region"] == ("string", "سوس ماسة")
    assert root["FormVersion"] == ("string", "2")
    phone = dict(zip([h for _, h in sheets["coop"][0]], sheets["coop"][3], strict=False))["phone"]
    assert phone == ("string", "0612345678")
    member = _by_header(sheets["coop-members"])
    assert member["age"] == ("float", "42")
    assert member["joined"] == ("date", "2020-01-15T09:30:00")
    writing = [p.get(_q("style:writing-mode")) for p in content.iter(_q("style:table-properties"))]
    assert "rl-tb" in writing  # the data sheets read right to left
    filtered = [r.get(_q("table:target-range-address")) for r in content.iter(_q("table:database-range"))]
    assert any(re.fullmatch(r"coop\.A1:coop\.[A-Z]+4", a or "") for a in filtered), filtered

    csv_sheets, _ = _sheets(tmp_path / "coop_csv.ods")
    (table,) = csv_sheets.values()
    assert table[0][0] == ("string", "SubmissionDate")  # the BOM was read as one, not as text
    from_csv = _by_header(table)
    assert from_csv["coop_name"] == ("string", NAME)
    assert from_csv["region"] == ("string", "سوس ماسة")
    assert from_csv["activities"] == ("string", "الفلاحة; الصناعة التقليدية")
    assert from_csv["revenue"] == ("float", "125000.5")
