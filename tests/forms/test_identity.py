"""Form ids and versions a spreadsheet does not give (forms/identity.py).

Rules: ID-1 the file name gives the id: last path segment, one .xlsx/.xls/.xml extension dropped, white
space trimmed, NFC, non-ASCII letters and spaces kept (as ODK Central keeps them); ID-2 the
``X-XlsForm-FormId-Fallback`` value is percent-decoded first (Central's web page encodes it); ID-3 a name
that gives no usable id is refused with a code and a reason (empty, control characters, still ending in
.xls/.xlsx/.xml, too long); VER-1 a generated version is ``yyyymmddnn``, one past the day's highest
revision, and never one the form has; VER-2 stamping puts the version on the primary instance root and
changes no other byte.
"""

from __future__ import annotations

import unicodedata
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from forms.errors import FormError
from forms.identity import (
    MAX_FORM_ID_LENGTH,
    clean_form_id,
    form_id_from_filename,
    form_id_from_header,
    next_version,
    restamp_version,
    stamp_version,
)
from forms.xform import parse_xform
from tests.forms.conftest import md_xform

NAMES = [
    ("plain", "household_survey.xlsx", "household_survey"),
    ("xls", "tutorial.xls", "tutorial"),
    ("upper-case-extension", "FORM.XLSX", "FORM"),
    ("only-one-extension", "form.backup.xlsx", "form.backup"),
    ("spaces-kept", "  Enquête ménages 2026.xlsx ", "Enquête ménages 2026"),
    ("arabic", "استبيان.xlsx", "استبيان"),
    ("windows-path", "C:\\Users\\amina\\Desktop\\suivi.xlsx", "suivi"),
    ("unix-path", "/tmp/x/suivi.xls", "suivi"),
    ("decomposed-is-composed", unicodedata.normalize("NFD", "my-båd-førm.xlsx"), "my-båd-førm"),
]


@pytest.mark.parametrize(("case", "filename", "expected"), NAMES, ids=[n[0] for n in NAMES])
def test_id_1_file_name_gives_the_id(case: str, filename: str, expected: str) -> None:
    assert form_id_from_filename(filename) == expected


HEADERS = [
    ("plain", "my_form", "my_form"),
    ("percent-encoded", "my-b%C3%A5d-f%C3%B8rm", "my-båd-førm"),
    ("encoded-space", "Enqu%C3%AAte%20m%C3%A9nages", "Enquête ménages"),
    ("path-dropped", "..%2F..%2Fetc", "etc"),
]


@pytest.mark.parametrize(("case", "value", "expected"), HEADERS, ids=[h[0] for h in HEADERS])
def test_id_2_fallback_header_is_percent_decoded(case: str, value: str, expected: str) -> None:
    assert form_id_from_header(value) == expected


REFUSED = [
    ("empty", ".xlsx", "missing_form_id"),
    ("blank", "   .xls", "missing_form_id"),
    ("double-extension", "form.xls.xls", "invalid_form_id"),
    ("xml-after-xlsx", "form.xml.xlsx", "invalid_form_id"),
    ("control-character", "form\x01.xlsx", "invalid_form_id"),
    ("too-long", "f" * (MAX_FORM_ID_LENGTH + 1) + ".xlsx", "invalid_form_id"),
]


@pytest.mark.parametrize(("case", "filename", "code"), REFUSED, ids=[r[0] for r in REFUSED])
def test_id_3_unusable_names_are_refused(case: str, filename: str, code: str) -> None:
    with pytest.raises(FormError) as info:
        form_id_from_filename(filename)
    assert info.value.code == code
    assert "form_id" in info.value.message and "settings" in info.value.message


def test_id_3_a_slash_in_a_fallback_is_refused() -> None:
    with pytest.raises(FormError) as info:
        clean_form_id("a/b", source="form id fallback")
    assert info.value.code == "invalid_form_id"
    assert info.value.context["source"] == "form id fallback"


@given(st.text(min_size=1, max_size=80))
def test_id_cleaning_is_idempotent(text: str) -> None:
    """Whatever a name gives, cleaning the result again gives the same id (or both are refused)."""
    try:
        once = clean_form_id(text, source="file name")
    except FormError:
        return
    assert clean_form_id(once, source="file name") == once
    assert once == once.strip() and unicodedata.is_normalized("NFC", once)


DAY = date(2026, 12, 2)
VERSIONS = [
    ("first-of-the-day", [], "2026120201"),
    ("after-the-day's-highest", ["2026120201", "2026120203"], "2026120204"),
    ("other-days-ignored", ["2026120109", "1", "v2"], "2026120201"),
    ("past-99", ["2026120299"], "20261202100"),
]


@pytest.mark.parametrize(("case", "existing", "expected"), VERSIONS, ids=[v[0] for v in VERSIONS])
def test_ver_1_generated_versions(case: str, existing: list[str], expected: str) -> None:
    assert next_version(existing, DAY) == expected


@given(st.sets(st.one_of(st.integers(1, 150).map(lambda n: f"20261202{n:02d}"), st.text(max_size=12))))
def test_ver_1_never_collides(existing: set[str]) -> None:
    assert next_version(existing, DAY) not in existing


NO_VERSION_FORM = """
| survey |
|        | type | name | label                 |
|        | text | q1   | Q1 "quoted" > & <tags> |
| settings |
|          | form_id      |
|          | a"b&c>d      |
"""


def test_ver_2_stamping_changes_only_the_version() -> None:
    xform = md_xform(NO_VERSION_FORM)
    assert parse_xform(xform).version == ""
    stamped = stamp_version(xform, "2026120201")
    schema = parse_xform(stamped)
    assert schema.version == "2026120201"
    assert schema.form_id == 'a"b&c>d'
    assert stamped.replace(b' version="2026120201"', b"", 1) == xform
    root = etree.fromstring(stamped)
    assert root.tag.endswith("html")


VERSIONED_FORM = """
| survey |
|        | type | name    | label   |
|        | text | version | Version |
| settings |
|          | form_id | version |
|          | coop    | 3       |
"""


VERSIONS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@given(VERSIONS.filter(lambda v: v == v.strip()))  # a version is read stripped
def test_ver_3_restamping_replaces_the_version_and_nothing_else(version: str) -> None:
    xform = md_xform(VERSIONED_FORM)  # a question named "version" puts <version/> in the instance
    assert parse_xform(xform).version == "3"
    restamped = restamp_version(xform, version)
    schema = parse_xform(restamped)
    assert (schema.version, schema.form_id) == (version, "coop")
    assert [f.path for f in schema.fields] == [f.path for f in parse_xform(xform).fields]
    assert restamp_version(restamped, "3") == xform


def test_ver_4_restamping_a_form_without_a_version_stamps_it() -> None:
    xform = md_xform(NO_VERSION_FORM)
    assert restamp_version(xform, "7") == stamp_version(xform, "7")
