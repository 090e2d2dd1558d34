"""Form uploads: XLSForm conversion and XForm acceptance.

Rules: CV1 the upload kind comes from magic bytes, anything else is not_a_spreadsheet;
CV2 damaged and zip-bomb .xlsx files are refused before pyxform reads them; CV3 pyxform's errors
become FormError with pyxform's message and the sheet/row; CV4 a workbook without settings/form_id takes
the caller's default, else its file name (a name that gives no id is missing_form_id); CV5 an uploaded XForm is served
byte for byte, and one with a DTD/entity is refused; CV6 the result carries UTF-8 XForm bytes,
itemsets.csv, warnings and the schema.
"""

from __future__ import annotations

import io
import zipfile

import pytest

from forms.convert import MAX_ZIP_MEMBERS, convert_upload, sniff_kind
from forms.errors import FormError, localized_message
from tests.forms.conftest import SIMPLE_SETTINGS, SIMPLE_SURVEY, md_xform, xlsx_bytes


def _simple_xlsx() -> bytes:
    return xlsx_bytes({"survey": SIMPLE_SURVEY, "settings": SIMPLE_SETTINGS})


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"type,name,label\ntext,a,A\n", "form.csv"),
        (b"%PDF-1.4 not a form", "form.xlsx"),
        (b"", "empty.xlsx"),
    ],
    ids=["csv", "pdf-named-xlsx", "empty"],
)
def test_not_a_spreadsheet(data: bytes, filename: str) -> None:
    """CV1: unknown bytes are refused whatever the file name says."""
    with pytest.raises(FormError) as info:
        convert_upload(data, filename)
    assert info.value.code == "not_a_spreadsheet"


def test_magic_bytes_win_over_the_name() -> None:
    """CV1: an .xlsx named .xls is still read as .xlsx."""
    assert sniff_kind(_simple_xlsx(), "form.xls") == "xlsx"
    converted = convert_upload(_simple_xlsx(), "form.xls")
    assert converted.source_kind == "xlsx"


def test_zip_that_is_not_a_workbook() -> None:
    """CV1: a zip without xl/workbook.xml is not a spreadsheet (pyxform would fall through to CSV)."""
    with pytest.raises(FormError) as info:
        convert_upload(_zip({"word/document.xml": b"<w/>"}), "report.xlsx")
    assert info.value.code == "not_a_spreadsheet"


def test_corrupt_xlsx() -> None:
    """CV2: a truncated .xlsx is corrupt_spreadsheet."""
    data = _simple_xlsx()
    with pytest.raises(FormError) as info:
        convert_upload(data[: len(data) // 2], "form.xlsx")
    assert info.value.code == "corrupt_spreadsheet"


def test_zip_bomb_by_ratio() -> None:
    """CV2: a member that expands more than the ratio limit is refused before reading."""
    bomb = _zip(
        {
            "[Content_Types].xml": b"<x/>",
            "xl/workbook.xml": b"<w/>",
            "xl/worksheets/sheet1.xml": b"\0" * 8_000_000,
        }
    )
    with pytest.raises(FormError) as info:
        convert_upload(bomb, "bomb.xlsx")
    assert info.value.code == "spreadsheet_too_large"
    assert info.value.context["member"] == "xl/worksheets/sheet1.xml"


def test_zip_bomb_by_member_count() -> None:
    """CV2: too many members is refused."""
    members = {f"xl/m{i}.xml": b"" for i in range(MAX_ZIP_MEMBERS + 1)}
    members["xl/workbook.xml"] = b"<w/>"
    with pytest.raises(FormError) as info:
        convert_upload(_zip(members), "many.xlsx")
    assert info.value.code == "spreadsheet_too_large"


def test_missing_survey_sheet() -> None:
    """CV3: pyxform's "must have a sheet named 'survey'" comes through with the sheet."""
    data = xlsx_bytes({"choices": [["list_name", "name", "label"], ["yn", "yes", "Yes"]], "settings": SIMPLE_SETTINGS})
    with pytest.raises(FormError) as info:
        convert_upload(data, "form.xlsx")
    assert info.value.code == "xlsform_invalid"
    assert "survey" in info.value.message
    assert info.value.context["sheet"] == "survey"


def test_duplicate_names() -> None:
    """CV3: duplicate names are reported with pyxform's row and a French version."""
    survey = [*SIMPLE_SURVEY, ["text", "members", "Again"]]
    with pytest.raises(FormError) as info:
        convert_upload(xlsx_bytes({"survey": survey, "settings": SIMPLE_SETTINGS}), "form.xlsx")
    error = info.value
    assert error.code == "xlsform_invalid"
    assert "[row : 4]" in error.message and "'members'" in error.message
    assert (error.context["row"], error.context["sheet"]) == (4, "survey")
    assert localized_message(error, "fr").startswith("[feuille survey, ligne 4] Le nom « members »")


def test_unknown_type_keeps_pyxform_message() -> None:
    """CV3: an unknown question type is pyxform's message verbatim."""
    survey = [["type", "name", "label"], ["txet", "a", "A"]]
    with pytest.raises(FormError) as info:
        convert_upload(xlsx_bytes({"survey": survey, "settings": SIMPLE_SETTINGS}), "form.xlsx")
    assert "Unknown question type 'txet'" in info.value.message


def test_non_pyxform_exception_becomes_form_error() -> None:
    """CV3: select_one_external without choice_filter makes pyxform raise KeyError; still a FormError."""
    survey = [["type", "name", "label"], ["select_one_external ext", "q", "Q"]]
    external = [["list_name", "name", "label"], ["ext", "a", "A"]]
    data = xlsx_bytes({"survey": survey, "external_choices": external, "settings": SIMPLE_SETTINGS})
    with pytest.raises(FormError) as info:
        convert_upload(data, "form.xlsx")
    assert info.value.code in ("conversion_failed", "xlsform_invalid")
    assert info.value.message


def test_missing_form_id_comes_from_the_file_name() -> None:
    """CV4: without settings/form_id the id is the file name's (pyxform's default for a path, Central's)."""
    converted = convert_upload(xlsx_bytes({"survey": SIMPLE_SURVEY}), "Enquête ménages.xlsx")
    assert converted.schema.form_id == "Enquête ménages"
    assert converted.schema.version == ""
    with pytest.raises(FormError) as info:
        convert_upload(xlsx_bytes({"survey": SIMPLE_SURVEY}), ".xlsx")
    assert info.value.code == "missing_form_id"
    assert "settings" in info.value.message and "form_id" in info.value.message
    assert localized_message(info.value, "fr").startswith("Ajoutez la colonne form_id")


def test_missing_form_id_with_default() -> None:
    """CV4: a caller-supplied default id is used only when the workbook has none."""
    converted = convert_upload(xlsx_bytes({"survey": SIMPLE_SURVEY}), "form.xlsx", default_form_id="from_name")
    assert converted.schema.form_id == "from_name"
    own = convert_upload(_simple_xlsx(), "form.xlsx", default_form_id="ignored")
    assert own.schema.form_id == "coop_simple"


def test_xlsx_conversion_result() -> None:
    """CV6: UTF-8 XForm bytes, no itemsets, the schema and the source kind."""
    converted = convert_upload(_simple_xlsx(), "coop.xlsx")
    assert converted.xform.startswith(b"<?xml")
    converted.xform.decode("utf-8")
    assert converted.itemsets is None
    assert converted.source_kind == "xlsx"
    assert (converted.schema.form_id, converted.schema.version) == ("coop_simple", "2024050101")
    assert [f.path for f in converted.schema.fields] == ["coop_name", "members", "meta", "meta/instanceID"]


def test_itemsets_and_warnings() -> None:
    """CV6: select_one_external yields itemsets.csv bytes; choices are read back into the schema."""
    survey = [
        ["type", "name", "label", "choice_filter"],
        ["text", "region", "Region", ""],
        ["select_one_external district", "district", "District", "region=${region}"],
        ["begin_repeat", "visit", "", ""],
        ["text", "note_text", "Note", ""],
        ["end_repeat", "", "", ""],
    ]
    external = [
        ["list_name", "name", "label", "region"],
        ["district", "d1", "D1", "r1"],
        ["district", "d2", "D2", "r2"],
    ]
    data = xlsx_bytes({"survey": survey, "external_choices": external, "settings": SIMPLE_SETTINGS})
    converted = convert_upload(data, "ext.xlsx")
    assert converted.itemsets is not None and b'"district","d1","D1","r1"' in converted.itemsets
    assert any("repeat" in w.lower() for w in converted.warnings)  # pyxform warns about the unlabelled repeat
    district = converted.schema.choice_lists["district"]
    assert district.source == "itemsets" and district.file_name == "itemsets.csv"
    assert [(c.name, c.labels[""], c.extra["region"]) for c in district.choices] == [
        ("d1", "D1", "r1"),
        ("d2", "D2", "r2"),
    ]


def test_xform_upload_is_served_as_is() -> None:
    """CV5: an uploaded XForm keeps its exact bytes."""
    xform = md_xform(
        """
        | survey   |         |      |       |
        |          | type    | name | label |
        |          | text    | a    | A     |
        | settings |         |      |       |
        |          | form_id |      |       |
        |          | xml_up  |      |       |
        """
    )
    converted = convert_upload(xform, "form.xml")
    assert converted.xform == xform
    assert converted.source_kind == "xform"
    assert converted.schema.form_id == "xml_up"


@pytest.mark.parametrize(
    "doctype",
    [
        b'<!DOCTYPE h:html [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        b'<!DOCTYPE h:html [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
        b'<!DOCTYPE h:html SYSTEM "http://127.0.0.1:9/x.dtd">',
    ],
    ids=["external-entity", "entity-expansion", "external-dtd"],
)
def test_xform_with_dtd_is_refused(doctype: bytes) -> None:
    """CV5: an XForm carrying a DTD or entity declaration is xform_unsafe."""
    xform = md_xform(
        """
        | survey   |         |      |       |
        |          | type    | name | label |
        |          | text    | a    | A     |
        """
    )
    unsafe = xform.replace(b'<?xml version="1.0"?>', b'<?xml version="1.0"?>' + doctype, 1)
    assert unsafe != xform
    with pytest.raises(FormError) as info:
        convert_upload(unsafe, "evil.xml")
    assert info.value.code == "xform_unsafe"


def test_xml_that_is_not_an_xform() -> None:
    """CV5: well-formed XML that is not an XForm is xform_invalid."""
    with pytest.raises(FormError) as info:
        convert_upload(b"<html><body/></html>", "page.xml")
    assert info.value.code == "xform_invalid"


def test_corrupt_xls() -> None:
    """CV2: a damaged legacy .xls (OLE2 header, garbage after) is corrupt_spreadsheet."""
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"garbage" * 100
    with pytest.raises(FormError) as info:
        convert_upload(data, "form.xls")
    assert info.value.code == "corrupt_spreadsheet"
