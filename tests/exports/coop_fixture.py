"""A cooperative survey in French and Arabic, built by hand as FormSchemas (two versions), and records.

Version 2 (current), as an XLSForm:

| type                    | name       | label::French (fr)  | label::Arabic (ar) |
| text                    | coop_name  | Nom                 | الاسم              |
| select_one regions      | region     | Région              | الجهة              |
| select_multiple acts    | activities | Activités           | الأنشطة            |
| date                    | founded    | Fondée le           | تاريخ التأسيس      |
| geopoint                | location   | Position            | الموقع             |
| decimal                 | revenue    | Revenu              | الدخل              |
| begin_group             | details    | Détails             | تفاصيل             |
| begin_repeat            | members    | Membres             | الأعضاء            |
| text                    | name       | Nom du membre       | اسم العضو          |
| integer                 | age        | Âge                 | العمر              |
| dateTime                | joined     | Adhésion            | الانضمام           |
| begin_repeat            | children   | Enfants             | الأطفال            |
| text                    | child_name | Prénom              | الاسم              |
| end_repeat / end_repeat / end_group                                             |

Version 1 had a ``phone`` text question after ``coop_name`` and no ``revenue``.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from exports.csv_zip import write_csv_zip
from exports.options import ExportOptions
from exports.records import ExportRecord
from forms.schema import Choice, ChoiceList, Field, FormSchema

FR = "French (fr)"
AR = "Arabic (ar)"


def _l(fr: str, ar: str) -> dict[str, str]:
    return {FR: fr, AR: ar}


def _q(path: str, bind: str, control: str, fr: str, ar: str, **kw: Any) -> Field:
    parts = path.split("/")
    return Field(path, parts[-1], "question", bind, control, labels=_l(fr, ar), **kw)


CHOICES = {
    "regions": ChoiceList(
        "regions",
        (
            Choice("r1", _l("Souss-Massa", "سوس ماسة")),
            Choice("r2", _l("Drâa-Tafilalet", "درعة تافيلالت")),
        ),
    ),
    "acts": ChoiceList(
        "acts",
        (
            Choice("agri", _l("Agriculture", "الفلاحة")),
            Choice("craft", _l("Artisanat", "الصناعة التقليدية")),
            Choice("other", _l("Autre", "أخرى")),
        ),
    ),
}

_M = "details/members"
_C = "details/members/children"

V2_FIELDS = (
    _q("coop_name", "string", "input", "Nom", "الاسم"),
    _q("region", "string", "select_one", "Région", "الجهة", choice_list="regions"),
    _q("activities", "string", "select_multiple", "Activités", "الأنشطة", choice_list="acts"),
    _q("founded", "date", "input", "Fondée le", "تاريخ التأسيس"),
    _q("location", "geopoint", "input", "Position", "الموقع"),
    _q("revenue", "decimal", "input", "Revenu", "الدخل"),
    Field("details", "details", "group", labels=_l("Détails", "تفاصيل")),
    Field(_M, "members", "repeat", labels=_l("Membres", "الأعضاء")),
    _q(f"{_M}/name", "string", "input", "Nom du membre", "اسم العضو", repeat=_M),
    _q(f"{_M}/age", "int", "input", "Âge", "العمر", repeat=_M),
    _q(f"{_M}/joined", "dateTime", "input", "Adhésion", "الانضمام", repeat=_M),
    Field(_C, "children", "repeat", labels=_l("Enfants", "الأطفال"), repeat=_M),
    _q(f"{_C}/child_name", "string", "input", "Prénom", "الاسم", repeat=_C),
    Field("meta", "meta", "group"),
    Field("meta/instanceID", "instanceID", "question", "string", "metadata"),
)

V1_FIELDS = (
    V2_FIELDS[0],
    _q("phone", "string", "input", "Téléphone", "الهاتف"),
    *V2_FIELDS[1:5],
    *V2_FIELDS[6:],
)


def coop_schema(version: str = "2") -> FormSchema:
    """The coop form at version ``"1"`` or ``"2"``."""
    return FormSchema(
        form_id="coop",
        version=version,
        title="Coopératives",
        languages=(FR, AR),
        default_language=FR,
        fields=V2_FIELDS if version == "2" else V1_FIELDS,
        choice_lists=CHOICES,
    )


SCHEMAS = (coop_schema("1"), coop_schema("2"))


def record(instance: str, values: Mapping[str, Any], **kw: Any) -> ExportRecord:
    """An ExportRecord of version 2 received on 2024-05-02 10:00 UTC unless told otherwise."""
    kw.setdefault("form_version", "2")
    kw.setdefault("submission_date", datetime(2024, 5, 2, 10, 0, tzinfo=UTC))
    return ExportRecord(instance_id=instance, values=values, **kw)


def coop_values(instance: str, **overrides: Any) -> dict[str, Any]:
    """A clean submission: two members, the first with two children."""
    values: dict[str, Any] = {
        "coop_name": "Coopérative Tifawin",
        "region": "r1",
        "activities": "agri craft",
        "founded": "2019-03-08",
        "location": "30.4278 -9.5981 74 5.0",
        "revenue": "125000.5",
        "details": {
            "members": [
                {
                    "name": "Fatima",
                    "age": "42",
                    "joined": "2020-01-15T09:30:00.000+01:00",
                    "children": [{"child_name": "Amine"}, {"child_name": "Salma"}],
                },
                {"name": "Youssef", "age": "35", "joined": "2021-06-01T14:00:00.000+01:00"},
            ]
        },
        "meta": {"instanceID": instance},
    }
    values.update(overrides)
    return values


def export_files(
    records: list[ExportRecord], options: ExportOptions | None = None, schemas: tuple[FormSchema, ...] = SCHEMAS
) -> dict[str, str]:
    """Run ``write_csv_zip`` and return every member of the zip as text (BOM kept, CRLF turned to LF)."""
    buf = io.BytesIO()
    write_csv_zip(schemas, records, options or ExportOptions(), buf)
    with zipfile.ZipFile(buf) as zf:
        return {n: zf.read(n).decode("utf-8").replace("\r\n", "\n") for n in zf.namelist()}


def table_dicts(text: str) -> list[dict[str, str]]:
    """Parse CSV text into one dict per row."""
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


def same_as_csv(cell: object, text: str) -> bool:
    """Whether an XLSX cell read back by openpyxl holds what ``text`` says in the CSV, in its type."""
    if cell is None or text == "":
        return cell is None and text == ""
    if isinstance(cell, bool):
        return text in (("true", "1") if cell else ("false", "0"))
    if isinstance(cell, int | float):
        return float(text) == cell
    if isinstance(cell, datetime):  # openpyxl reads a date as a datetime at midnight
        parsed = datetime.fromisoformat(text) if len(text) > 10 else datetime.combine(date.fromisoformat(text), time())
        return parsed.replace(tzinfo=None) == cell
    if isinstance(cell, time):
        return time.fromisoformat(text).replace(tzinfo=None) == cell
    return cell == text
