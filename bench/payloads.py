"""What the benchmarks send: a small bilingual bench XLSForm and realistic submissions for it.

The form (French and Arabic labels) has a group, selects, numbers, a date, a geopoint, a long text
and a repeat of board members; ``extra_fields`` adds integer questions so the cost model can vary
the form's size. A submission is ~2 KB of UTF-8 XML with two repeat instances and French and Arabic
text, exactly what ODK Collect would send for this form; each has a unique ``uuid:`` instanceID.
Everything is deterministic for a given seed so sizes are testable.
"""

from __future__ import annotations

import io
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape

from openpyxl import Workbook

FR = "French (fr)"
AR = "Arabic (ar)"
BENCH_FORM_ID = "fieldsync_bench"
BENCH_FORM_VERSION = "2026010101"
REPEAT_INSTANCES = 2

REGIONS = (
    ("tanger_tetouan", "Tanger-Tétouan-Al Hoceïma", "طنجة تطوان الحسيمة"),
    ("oriental", "Oriental", "الشرق"),
    ("fes_meknes", "Fès-Meknès", "فاس مكناس"),
    ("rabat_sale", "Rabat-Salé-Kénitra", "الرباط سلا القنيطرة"),
    ("beni_mellal", "Béni Mellal-Khénifra", "بني ملال خنيفرة"),
    ("casablanca", "Casablanca-Settat", "الدار البيضاء سطات"),
    ("marrakech", "Marrakech-Safi", "مراكش آسفي"),
    ("draa_tafilalet", "Drâa-Tafilalet", "درعة تافيلالت"),
    ("souss_massa", "Souss-Massa", "سوس ماسة"),
    ("guelmim", "Guelmim-Oued Noun", "كلميم واد نون"),
    ("laayoune", "Laâyoune-Sakia El Hamra", "العيون الساقية الحمراء"),
    ("dakhla", "Dakhla-Oued Ed-Dahab", "الداخلة وادي الذهب"),
)
NEEDS = (
    ("finance", "Financement", "التمويل"),
    ("training", "Formation", "التكوين"),
    ("marketing", "Commercialisation", "التسويق"),
    ("equipment", "Équipement", "التجهيز"),
    ("legal", "Accompagnement juridique", "المواكبة القانونية"),
)
ROLES = (
    ("president", "Présidente", "الرئيسة"),
    ("treasurer", "Trésorière", "أمينة المال"),
    ("secretary", "Secrétaire", "الكاتبة"),
    ("member", "Membre", "عضوة"),
)
SEXES = (("f", "Femme", "امرأة"), ("m", "Homme", "رجل"))

FRENCH_TEXT = (
    "coopérative féminine d'argan, séchage solaire, qualité améliorée, marché hebdomadaire de la commune, "
    "formation à la comptabilité, besoin d'un local équipé, écoulement des produits à Agadir"
)
ARABIC_TEXT = (
    "تعاونية نسائية لإنتاج زيت الأركان مع تحسين الجودة والتسويق في السوق الأسبوعي وتكوين في المحاسبة "
    "وحاجة إلى مقر مجهز لتخزين المنتوجات"
)
FRENCH_WORDS = tuple(FRENCH_TEXT.split(" "))
ARABIC_WORDS = tuple(ARABIC_TEXT.split(" "))
FIRST_NAMES = ("Fatima", "Khadija", "Aïcha", "Naïma", "Zineb", "Hafsa", "Meryem", "Saïda", "فاطمة", "خديجة", "عائشة")
LAST_NAMES = ("El Amrani", "Benali", "Ouahbi", "Tazi", "Idrissi", "Berrada", "العلوي", "بنعلي", "الإدريسي")


def _choice_rows(list_name: str, choices: tuple[tuple[str, str, str], ...]) -> list[list[str]]:
    return [[list_name, name, fr, ar] for name, fr, ar in choices]


def bench_form_id(extra_fields: int = 0) -> str:
    """Return the form id of the bench form with ``extra_fields`` extra questions."""
    return BENCH_FORM_ID if extra_fields == 0 else f"{BENCH_FORM_ID}_x{extra_fields}"


def build_bench_xlsform(
    extra_fields: int = 0, version: str = BENCH_FORM_VERSION, xml_form_id: str | None = None
) -> bytes:
    """Return the bench XLSForm as .xlsx bytes (``extra_fields`` adds integer questions in a group)."""
    workbook = Workbook()
    survey = workbook.active
    assert survey is not None
    survey.title = "survey"
    survey.append(["type", "name", f"label::{FR}", f"label::{AR}", "required", "appearance"])
    rows: list[list[str]] = [
        ["start", "start", "", "", "", ""],
        ["end", "end", "", "", "", ""],
        ["today", "today", "", "", "", ""],
        ["begin_group", "identification", "Identification", "التعريف", "", "field-list"],
        ["text", "coop_name", "Nom de la coopérative", "اسم التعاونية", "yes", ""],
        ["select_one region", "region", "Région", "الجهة", "yes", ""],
        ["text", "commune", "Commune", "الجماعة", "", ""],
        ["date", "founded", "Date de création", "تاريخ التأسيس", "", ""],
        ["end_group", "", "", "", "", ""],
        ["integer", "member_count", "Nombre de membres", "عدد الأعضاء", "yes", ""],
        ["integer", "women_count", "Nombre de femmes", "عدد النساء", "", ""],
        ["decimal", "revenue_mad", "Chiffre d'affaires (MAD)", "رقم المعاملات (درهم)", "", ""],
        ["select_multiple needs", "needs", "Besoins", "الحاجيات", "", ""],
        ["geopoint", "location", "Localisation", "الموقع", "", ""],
        ["text", "observations", "Observations", "ملاحظات", "", "multiline"],
        ["begin_repeat", "board_members", "Membres du bureau", "أعضاء المكتب", "", ""],
        ["text", "member_name", "Nom", "الاسم", "yes", ""],
        ["select_one role", "member_role", "Fonction", "المهمة", "", ""],
        ["integer", "member_age", "Âge", "السن", "", ""],
        ["select_one sex", "member_sex", "Sexe", "الجنس", "", ""],
        ["text", "member_comment", "Commentaire", "تعليق", "", ""],
        ["end_repeat", "", "", "", "", ""],
    ]
    if extra_fields:
        rows.append(["begin_group", "extra", "Questions supplémentaires", "أسئلة إضافية", "", ""])
        for index in range(1, extra_fields + 1):
            rows.append(["integer", f"x{index:03d}", f"Question {index}", f"سؤال {index}", "", ""])
        rows.append(["end_group", "", "", "", "", ""])
    for row in rows:
        survey.append(row)
    choices = workbook.create_sheet("choices")
    choices.append(["list_name", "name", f"label::{FR}", f"label::{AR}"])
    for row in (
        _choice_rows("region", REGIONS)
        + _choice_rows("needs", NEEDS)
        + _choice_rows("role", ROLES)
        + _choice_rows("sex", SEXES)
    ):
        choices.append(row)
    settings = workbook.create_sheet("settings")
    settings.append(["form_title", "form_id", "version", "default_language"])
    form_id = xml_form_id or bench_form_id(extra_fields)
    settings.append([f"Fieldsync bench ({extra_fields} extra)", form_id, version, FR])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class Submission:
    """One generated submission: its instanceID and the XML bytes Collect would send."""

    instance_id: str
    xml: bytes


def _sentence(rng: random.Random, words: tuple[str, ...] | list[str], count: int) -> str:
    return " ".join(rng.choice(words) for _ in range(count))


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def submission_xml(
    rng: random.Random,
    instance_id: str,
    *,
    extra_fields: int = 0,
    version: str = BENCH_FORM_VERSION,
    xml_form_id: str | None = None,
) -> bytes:
    """Return the XML of one ~2 KB submission (two repeat instances, French and Arabic text)."""
    region = rng.choice(REGIONS)[0]
    needs = " ".join(sorted({rng.choice(NEEDS)[0] for _ in range(3)}))
    members = rng.randint(7, 120)
    day = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    stamp = f"{day}T{rng.randint(7, 17):02d}:{rng.randint(0, 59):02d}:00.000+01:00"
    location = f"{rng.uniform(27.5, 35.8):.6f} {rng.uniform(-13.0, -1.2):.6f} {rng.uniform(0, 2500):.1f} 4.8"
    observations = f"{_sentence(rng, FRENCH_WORDS, 30)} — {_sentence(rng, ARABIC_WORDS, 36)}"
    parts = [
        f'<data xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms" '
        f'id="{xml_form_id or bench_form_id(extra_fields)}" version="{escape(version)}">',
        f"<start>{stamp}</start><end>{stamp}</end><today>{day}</today>",
        "<identification>",
        f"<coop_name>Coopérative {escape(rng.choice(FIRST_NAMES))} تعاونية {rng.randint(1, 9999)}</coop_name>",
        f"<region>{region}</region>",
        f"<commune>{escape(_sentence(rng, FRENCH_WORDS, 2))}</commune>",
        f"<founded>{rng.randint(1990, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}</founded>",
        "</identification>",
        f"<member_count>{members}</member_count>",
        f"<women_count>{rng.randint(0, members)}</women_count>",
        f"<revenue_mad>{rng.uniform(1000, 900000):.2f}</revenue_mad>",
        f"<needs>{needs}</needs>",
        f"<location>{location}</location>",
        f"<observations>{escape(observations)}</observations>",
    ]
    for _ in range(REPEAT_INSTANCES):
        parts.append(
            "<board_members>"
            f"<member_name>{escape(_name(rng))}</member_name>"
            f"<member_role>{rng.choice(ROLES)[0]}</member_role>"
            f"<member_age>{rng.randint(18, 75)}</member_age>"
            f"<member_sex>{rng.choice(SEXES)[0]}</member_sex>"
            f"<member_comment>{escape(_sentence(rng, FRENCH_WORDS, 6))} / "
            f"{escape(_sentence(rng, ARABIC_WORDS, 6))}</member_comment>"
            "</board_members>"
        )
    if extra_fields:
        parts.append("<extra>")
        parts.extend(f"<x{index:03d}>{rng.randint(0, 500)}</x{index:03d}>" for index in range(1, extra_fields + 1))
        parts.append("</extra>")
    parts.append(f"<meta><instanceID>{instance_id}</instanceID></meta></data>")
    return "".join(parts).encode("utf-8")


def generate_submissions(
    count: int, *, seed: int = 7, run_tag: str = "", extra_fields: int = 0, xml_form_id: str | None = None
) -> Iterator[Submission]:
    """Yield ``count`` submissions with unique instanceIDs (``run_tag`` keeps rounds apart)."""
    rng = random.Random(f"{seed}:{run_tag}:{extra_fields}")
    for _ in range(count):
        instance_id = f"uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        xml = submission_xml(rng, instance_id, extra_fields=extra_fields, xml_form_id=xml_form_id)
        yield Submission(instance_id, xml)


def multipart_body(xml: bytes, boundary: str) -> bytes:
    """Return a multipart/form-data body with the XML as ``xml_submission_file`` (as Collect sends it)."""
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="xml_submission_file"; filename="submission.xml"\r\n'
        "Content-Type: text/xml\r\n\r\n"
    ).encode()
    return head + xml + f"\r\n--{boundary}--\r\n".encode()


def push_body(
    submissions: list[Submission],
    *,
    device_id: str,
    batch_id: str,
    form_id: str = BENCH_FORM_ID,
    version: str = BENCH_FORM_VERSION,
) -> bytes:
    """Return a ``fieldsync/2`` push body carrying ``submissions`` as OpenRosa XML strings."""
    items = [
        {
            "instanceId": sub.instance_id,
            "formId": form_id,
            "formVersion": version,
            "data": sub.xml.decode("utf-8"),
            "attachments": [],
        }
        for sub in submissions
    ]
    body = {"protocol": "fieldsync/2", "deviceId": device_id, "batchId": batch_id, "items": items}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")
