"""The example forms and submissions that ``fieldsync demo`` publishes are valid and consistent.

Rules checked:
- EX-1: each example XLSForm converts with pyxform without warnings.
- EX-2: every labelled element, hint, message and choice has a French and an Arabic text.
- EX-3: the region → province cascade covers exactly Morocco's 12 regions; each province belongs to one.
- EX-4: the committed ``.xlsx`` files are what ``build_examples.py`` writes (nobody edited them by hand).
- EX-5: ODK Validate accepts both XForms (skipped only when ``java`` is absent).
- EX-6: every element and attribute of each sample submission exists in the form's primary instance,
  and values have the shape of their bind type.
- EX-7: sample submissions carry ``uuid:`` instance IDs; the entity form has one create and one update.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import openpyxl
import pytest
import pyxform
from pyxform.xls2xform import ConvertResult, convert

REPO = Path(__file__).resolve().parents[2]
FORMS_DIR = REPO / "examples" / "forms"
SUBMISSIONS_DIR = REPO / "examples" / "submissions"
FORM_IDS = ("coop_diagnostic", "entrepreneur_followup")
FR = "Français (fr)"
AR = "العربية (ar)"
XFORMS_NS = "http://www.w3.org/2002/xforms"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ODK_VALIDATE_JAR = Path(pyxform.__file__).parent / "validators" / "odk_validate" / "bin" / "ODK_Validate.jar"

# Elements a client adds to the primary instance on its own (docs/reference/xlsform.md §2.2).
CLIENT_ADDED_PATHS = {"meta/deprecatedID"}

# Value shapes per XForm bind type (docs/reference/xlsform.md §2.2).
VALUE_SHAPES = {
    "int": re.compile(r"-?\d+"),
    "decimal": re.compile(r"-?\d+(\.\d+)?"),
    "date": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "dateTime": re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:\d{2})?)"),
    "geopoint": re.compile(r"-?\d+(\.\d+)? -?\d+(\.\d+)?( -?\d+(\.\d+)?){0,2}"),
}


def load_builder() -> ModuleType:
    """Import ``examples/forms/build_examples.py`` (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_examples", FORMS_DIR / "build_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def converted() -> dict[str, ConvertResult]:
    """Convert each committed example form once for the whole module."""
    results = {}
    for form_id in FORM_IDS:
        results[form_id] = convert(FORMS_DIR / f"{form_id}.xlsx", warnings=[], validate=False)
    return results


def primary_instance(xform: str) -> ET.Element:
    """Return the root element of the XForm's primary (first) instance."""
    model = ET.fromstring(xform).find(f".//{{{XFORMS_NS}}}model")
    assert model is not None
    instance = model.find(f"{{{XFORMS_NS}}}instance")
    assert instance is not None
    return next(iter(instance))


def local(tag: str) -> str:
    """Return a tag name without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


def walk(element: ET.Element, prefix: str = "") -> Iterator[tuple[str, ET.Element]]:
    """Yield ``(path, element)`` for every descendant, paths relative to ``element`` without indices."""
    for child in element:
        path = f"{prefix}{local(child.tag)}"
        yield path, child
        yield from walk(child, f"{path}/")


def bind_types(xform: str, root_name: str) -> dict[str, str]:
    """Return the bind type of every instance path (relative to the root) that declares one."""
    types = {}
    for bind in ET.fromstring(xform).iter(f"{{{XFORMS_NS}}}bind"):
        nodeset, type_ = bind.get("nodeset", ""), bind.get("type")
        if type_ and nodeset.startswith(f"/{root_name}/"):
            types[nodeset.removeprefix(f"/{root_name}/")] = type_
    return types


def submission_files(form_id: str) -> list[Path]:
    """Return the sample submissions of one form, sorted by name."""
    return sorted((SUBMISSIONS_DIR / form_id).glob("*.xml"))


ALL_SUBMISSIONS = [(form_id, path) for form_id in FORM_IDS for path in submission_files(form_id)]


@pytest.mark.parametrize("form_id", FORM_IDS, ids=FORM_IDS)
def test_converts_without_warnings(converted: dict[str, ConvertResult], form_id: str) -> None:
    """EX-1."""
    result = converted[form_id]
    assert result.warnings == []
    assert result._survey is not None
    assert result._survey.id_string == form_id
    assert re.fullmatch(r"20\d{8}", result._survey.version)


@pytest.mark.parametrize("form_id", FORM_IDS, ids=FORM_IDS)
def test_every_text_is_in_french_and_arabic(converted: dict[str, ConvertResult], form_id: str) -> None:
    """EX-2."""
    survey = converted[form_id]._survey
    assert survey is not None
    missing = []
    labelled = 0
    for element in survey.iter_descendants():
        texts = {"label": element.label, "hint": getattr(element, "hint", None)}
        texts.update(
            (key, value) for key, value in (element.bind or {}).items() if key in ("jr:constraintMsg", "jr:requiredMsg")
        )
        for column, text in texts.items():
            if not text:
                continue
            labelled += column == "label"
            if not (isinstance(text, dict) and text.get(FR, "").strip() and text.get(AR, "").strip()):
                missing.append(f"{element.get_xpath()} {column}")
    for list_name, choices in (converted[form_id]._pyxform or {}).get("choices", {}).items():
        for choice in choices:
            label = choice.get("label")
            if not (isinstance(label, dict) and label.get(FR, "").strip() and label.get(AR, "").strip()):
                missing.append(f"choice {list_name}/{choice['name']}")
    assert labelled > 20
    assert missing == []


def test_arabic_labels_are_written_in_arabic(converted: dict[str, ConvertResult]) -> None:
    """EX-2: an Arabic column holding French text (a copy-paste slip) is caught."""
    arabic_letter = re.compile(r"[\u0600-\u06FF]")
    not_arabic = [
        element.get_xpath()
        for result in converted.values()
        for element in (result._survey.iter_descendants() if result._survey else ())
        if isinstance(element.label, dict) and not arabic_letter.search(element.label.get(AR, ""))
    ]
    assert not_arabic == []


def test_region_cascade_covers_the_12_regions() -> None:
    """EX-3."""
    sheet = openpyxl.load_workbook(FORMS_DIR / "coop_diagnostic.xlsx", read_only=True)["choices"]
    rows = sheet.iter_rows(values_only=True)
    header = list(next(rows))
    choices = [dict(zip(header, row, strict=False)) for row in rows]
    regions = [c["name"] for c in choices if c["list_name"] == "region"]
    provinces = [c for c in choices if c["list_name"] == "province"]
    assert len(regions) == 12
    assert len(set(regions)) == 12
    province_names = [p["name"] for p in provinces]
    assert len(province_names) == len(set(province_names)), "a province is listed under two regions"
    assert all(p["region"] in regions for p in provinces)
    per_region = {region: sum(p["region"] == region for p in provinces) for region in regions}
    # Dakhla-Oued Ed-Dahab has exactly two provinces (Oued Ed-Dahab, Aousserd); every other has 4+.
    assert per_region.pop("dakhla_oued_ed_dahab") == 2
    assert min(per_region.values()) >= 4


@pytest.mark.parametrize("form_id", FORM_IDS, ids=FORM_IDS)
def test_committed_workbook_matches_the_builder(form_id: str) -> None:
    """EX-4."""
    expected = load_builder().example_forms()[f"{form_id}.xlsx"]
    workbook = openpyxl.load_workbook(FORMS_DIR / f"{form_id}.xlsx", read_only=True)
    assert workbook.sheetnames == list(expected)
    for sheet_name, rows in expected.items():
        values = list(workbook[sheet_name].iter_rows(values_only=True))
        header = [str(cell) for cell in values[0]]
        committed = [{k: v for k, v in zip(header, row, strict=False) if v is not None} for row in values[1:]]
        assert committed == [{k: v for k, v in row.items() if v} for row in rows], sheet_name


@pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed; ODK Validate needs it")
def test_odk_validate_accepts_both_forms(converted: dict[str, ConvertResult], tmp_path: Path) -> None:
    """EX-5: one JVM validates both files."""
    paths = []
    for form_id, result in converted.items():
        path = tmp_path / f"{form_id}.xml"
        path.write_text(result.xform, encoding="utf-8")
        paths.append(str(path))
    completed = subprocess.run(
        ["java", "-Djava.awt.headless=true", "-jar", str(ODK_VALIDATE_JAR), *paths],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("Xform is valid") == len(paths)


def test_each_form_has_three_sample_submissions() -> None:
    """EX-6: the demo data set is complete."""
    assert {form_id: len(submission_files(form_id)) for form_id in FORM_IDS} == dict.fromkeys(FORM_IDS, 3)


@pytest.mark.parametrize(("form_id", "path"), ALL_SUBMISSIONS, ids=[f"{f}/{p.name}" for f, p in ALL_SUBMISSIONS])
def test_submission_matches_the_form(converted: dict[str, ConvertResult], form_id: str, path: Path) -> None:
    """EX-6."""
    xform = converted[form_id].xform
    instance = primary_instance(xform)
    form_paths = {p: element for p, element in walk(instance)}
    submission = ET.parse(path).getroot()
    assert local(submission.tag) == local(instance.tag)
    assert submission.get("id") == instance.get("id")
    assert submission.get("version") == instance.get("version")

    types = bind_types(xform, local(instance.tag))
    unknown: list[str] = []
    bad_values: list[str] = []
    for sub_path, element in walk(submission):
        if sub_path in CLIENT_ADDED_PATHS:
            continue
        if sub_path not in form_paths:
            unknown.append(sub_path)
            continue
        extra_attributes = set(element.attrib) - set(form_paths[sub_path].attrib)
        unknown.extend(f"{sub_path}/@{name}" for name in sorted(extra_attributes))
        shape = VALUE_SHAPES.get(types.get(sub_path, ""))
        if shape and element.text and not shape.fullmatch(element.text):
            bad_values.append(f"{sub_path}={element.text!r}")
    assert unknown == []
    assert bad_values == []
    # Every sample fills at least one repeat twice (two siblings with the same path under one parent).
    assert any(
        sum(1 for child in parent if child.tag == tag) >= 2
        for parent in submission.iter()
        for tag in {child.tag for child in parent}
        if len(parent)
    )


@pytest.mark.parametrize(("form_id", "path"), ALL_SUBMISSIONS, ids=[f"{f}/{p.name}" for f, p in ALL_SUBMISSIONS])
def test_submission_meta(form_id: str, path: Path) -> None:
    """EX-7: instance IDs, and deprecatedID pointing at another sample."""
    meta = ET.parse(path).getroot().find("meta")
    assert meta is not None
    assert re.fullmatch(f"uuid:{UUID}", meta.findtext("instanceID", ""))
    deprecated = meta.findtext("deprecatedID")
    if deprecated is not None:
        others = {ET.parse(other).getroot().findtext("meta/instanceID") for other in submission_files(form_id)}
        assert deprecated in others - {meta.findtext("instanceID")}


@pytest.mark.parametrize("form_id", FORM_IDS, ids=FORM_IDS)
def test_one_sample_per_form_is_an_edit(form_id: str) -> None:
    """EX-7."""
    edits = [p for p in submission_files(form_id) if ET.parse(p).getroot().find("meta/deprecatedID") is not None]
    assert len(edits) == 1


def test_entity_samples_create_then_update_the_same_entrepreneur() -> None:
    """EX-7: the create carries a fresh id; updates carry the picked id and Collect's version attributes."""
    entities = {p.name: ET.parse(p).getroot() for p in submission_files("entrepreneur_followup")}
    creates = {n: r for n, r in entities.items() if r.find("meta/entity[@create='1']") is not None}
    updates = {n: r for n, r in entities.items() if r.find("meta/entity[@update='1']") is not None}
    assert len(creates) == 1
    assert len(updates) == 2  # the update and its edit
    (created,) = creates.values()
    created_entity = created.find("meta/entity")
    assert created_entity is not None
    entity_id = created_entity.get("id", "")
    assert re.fullmatch(UUID, entity_id)
    assert created.findtext("profile/new_entrepreneur_id") == entity_id
    for root in updates.values():
        entity = root.find("meta/entity")
        assert entity is not None
        assert entity.get("id") == root.findtext("profile/entrepreneur") == entity_id
        assert entity.get("create") == "0"
        assert re.fullmatch(r"\d+", entity.get("baseVersion", ""))
        assert re.fullmatch(r"\d+", entity.get("trunkVersion", ""))
        assert re.fullmatch(UUID, entity.get("branchId", ""))
        assert entity.findtext("label")
