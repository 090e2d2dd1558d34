"""Build the two bilingual (French/Arabic) example XLSForms that ``fieldsync demo`` publishes.

This module owns the content of ``coop_diagnostic.xlsx`` (strategic diagnostic of a cooperative),
``entrepreneur_followup.xlsx`` (follow-up visits of women entrepreneurs, an entity list) and
``beneficiary_registration.xlsx`` (the programme's direct beneficiaries, which its indicators count). The forms
are written as plain rows here so that a reviewer can read them in a diff; the ``.xlsx`` files are
generated from these rows and committed next to this script.

Run it from the repository root: ``.venv/bin/python examples/forms/build_examples.py``.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from openpyxl import Workbook

FR = "Français (fr)"
AR = "العربية (ar)"
LANGUAGES = (FR, AR)

FORMS_DIR = Path(__file__).resolve().parent

# A fixed creation date keeps the workbook metadata stable from one build to the next.
WORKBOOK_CREATED = dt.datetime(2026, 11, 29, 8, 0, 0)
WORKBOOK_STAMP = f"{WORKBOOK_CREATED.isoformat()}Z"

Row = dict[str, str]
Sheets = dict[str, list[Row]]

# Translatable survey columns, in the order they appear in the sheet (one column per language).
TRANSLATED_SURVEY_COLUMNS = ("label", "hint", "constraint_message", "required_message")
PLAIN_SURVEY_COLUMNS = (
    "type",
    "name",
    "required",
    "relevant",
    "constraint",
    "calculation",
    "trigger",
    "choice_filter",
    "appearance",
    "parameters",
    "save_to",
)

REQUIRED_FR = "Cette question est obligatoire."
REQUIRED_AR = "هذا السؤال إجباري."


def question(
    type_: str,
    name: str,
    fr: str = "",
    ar: str = "",
    *,
    hint: tuple[str, str] | None = None,
    constraint: tuple[str, str, str] | None = None,
    required: bool = False,
    **columns: str,
) -> Row:
    """Return one survey row with its French and Arabic label, hint and messages."""
    row: Row = {"type": type_, "name": name, **columns}
    if fr or ar:
        row[f"label::{FR}"] = fr
        row[f"label::{AR}"] = ar
    if hint is not None:
        row[f"hint::{FR}"], row[f"hint::{AR}"] = hint
    if constraint is not None:
        row["constraint"], row[f"constraint_message::{FR}"], row[f"constraint_message::{AR}"] = constraint
    if required:
        row["required"] = "yes"
        row[f"required_message::{FR}"] = REQUIRED_FR
        row[f"required_message::{AR}"] = REQUIRED_AR
    return row


def end(kind: str) -> Row:
    """Return the row closing a group or a repeat (``kind`` is ``group`` or ``repeat``)."""
    return {"type": f"end_{kind}"}


def metadata_rows() -> list[Row]:
    """Return the audit metadata every Fieldsync form collects (ODK Collect fills them in)."""
    return [question(kind, kind) for kind in ("start", "end", "today", "deviceid")]


def choice_rows(list_name: str, options: Iterable[tuple[str, str, str]], **extra: str) -> list[Row]:
    """Return the choices rows of one list from ``(name, French label, Arabic label)`` triples."""
    return [
        {"list_name": list_name, "name": name, f"label::{FR}": fr, f"label::{AR}": ar, **extra}
        for name, fr, ar in options
    ]


# Morocco's 12 regions (2015 territorial division), with their official number, French and Arabic names.
REGIONS: tuple[tuple[str, str, str], ...] = (
    ("tanger_tetouan_al_hoceima", "Tanger-Tétouan-Al Hoceïma", "طنجة - تطوان - الحسيمة"),
    ("oriental", "L'Oriental", "الشرق"),
    ("fes_meknes", "Fès-Meknès", "فاس - مكناس"),
    ("rabat_sale_kenitra", "Rabat-Salé-Kénitra", "الرباط - سلا - القنيطرة"),
    ("beni_mellal_khenifra", "Béni Mellal-Khénifra", "بني ملال - خنيفرة"),
    ("casablanca_settat", "Casablanca-Settat", "الدار البيضاء - سطات"),
    ("marrakech_safi", "Marrakech-Safi", "مراكش - آسفي"),
    ("draa_tafilalet", "Drâa-Tafilalet", "درعة - تافيلالت"),
    ("souss_massa", "Souss-Massa", "سوس - ماسة"),
    ("guelmim_oued_noun", "Guelmim-Oued Noun", "كلميم - واد نون"),
    ("laayoune_sakia_el_hamra", "Laâyoune-Sakia El Hamra", "العيون - الساقية الحمراء"),
    ("dakhla_oued_ed_dahab", "Dakhla-Oued Ed-Dahab", "الداخلة - وادي الذهب"),
)

# Provinces and prefectures of each region. Dakhla-Oued Ed-Dahab really has only two provinces.
PROVINCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "tanger_tetouan_al_hoceima": (
        ("tanger_assilah", "Préfecture de Tanger-Assilah", "عمالة طنجة - أصيلة"),
        ("mdiq_fnideq", "Préfecture de M'diq-Fnideq", "عمالة المضيق - الفنيدق"),
        ("tetouan", "Tétouan", "تطوان"),
        ("fahs_anjra", "Fahs-Anjra", "الفحص - أنجرة"),
        ("larache", "Larache", "العرائش"),
        ("al_hoceima", "Al Hoceïma", "الحسيمة"),
        ("chefchaouen", "Chefchaouen", "شفشاون"),
        ("ouezzane", "Ouezzane", "وزان"),
    ),
    "oriental": (
        ("oujda_angad", "Préfecture d'Oujda-Angad", "عمالة وجدة - أنكاد"),
        ("nador", "Nador", "الناظور"),
        ("driouch", "Driouch", "الدريوش"),
        ("jerada", "Jerada", "جرادة"),
        ("berkane", "Berkane", "بركان"),
        ("taourirt", "Taourirt", "تاوريرت"),
        ("guercif", "Guercif", "جرسيف"),
        ("figuig", "Figuig", "فجيج"),
    ),
    "fes_meknes": (
        ("fes", "Préfecture de Fès", "عمالة فاس"),
        ("meknes", "Préfecture de Meknès", "عمالة مكناس"),
        ("el_hajeb", "El Hajeb", "الحاجب"),
        ("ifrane", "Ifrane", "إفران"),
        ("moulay_yacoub", "Moulay Yacoub", "مولاي يعقوب"),
        ("sefrou", "Sefrou", "صفرو"),
        ("boulemane", "Boulemane", "بولمان"),
        ("taounate", "Taounate", "تاونات"),
        ("taza", "Taza", "تازة"),
    ),
    "rabat_sale_kenitra": (
        ("rabat", "Préfecture de Rabat", "عمالة الرباط"),
        ("sale", "Préfecture de Salé", "عمالة سلا"),
        ("skhirate_temara", "Préfecture de Skhirate-Témara", "عمالة الصخيرات - تمارة"),
        ("kenitra", "Kénitra", "القنيطرة"),
        ("khemisset", "Khémisset", "الخميسات"),
        ("sidi_kacem", "Sidi Kacem", "سيدي قاسم"),
        ("sidi_slimane", "Sidi Slimane", "سيدي سليمان"),
    ),
    "beni_mellal_khenifra": (
        ("beni_mellal", "Béni Mellal", "بني ملال"),
        ("azilal", "Azilal", "أزيلال"),
        ("fquih_ben_salah", "Fquih Ben Salah", "الفقيه بن صالح"),
        ("khenifra", "Khénifra", "خنيفرة"),
        ("khouribga", "Khouribga", "خريبكة"),
    ),
    "casablanca_settat": (
        ("casablanca", "Préfecture de Casablanca", "عمالة الدار البيضاء"),
        ("mohammedia", "Préfecture de Mohammédia", "عمالة المحمدية"),
        ("el_jadida", "El Jadida", "الجديدة"),
        ("nouaceur", "Nouaceur", "النواصر"),
        ("mediouna", "Médiouna", "مديونة"),
        ("benslimane", "Benslimane", "بنسليمان"),
        ("berrechid", "Berrechid", "برشيد"),
        ("settat", "Settat", "سطات"),
        ("sidi_bennour", "Sidi Bennour", "سيدي بنور"),
    ),
    "marrakech_safi": (
        ("marrakech", "Préfecture de Marrakech", "عمالة مراكش"),
        ("chichaoua", "Chichaoua", "شيشاوة"),
        ("al_haouz", "Al Haouz", "الحوز"),
        ("el_kelaa_des_sraghna", "El Kelâa des Sraghna", "قلعة السراغنة"),
        ("essaouira", "Essaouira", "الصويرة"),
        ("rehamna", "Rehamna", "الرحامنة"),
        ("safi", "Safi", "آسفي"),
        ("youssoufia", "Youssoufia", "اليوسفية"),
    ),
    "draa_tafilalet": (
        ("errachidia", "Errachidia", "الرشيدية"),
        ("ouarzazate", "Ouarzazate", "ورزازات"),
        ("midelt", "Midelt", "ميدلت"),
        ("tinghir", "Tinghir", "تنغير"),
        ("zagora", "Zagora", "زاكورة"),
    ),
    "souss_massa": (
        ("agadir_ida_outanane", "Préfecture d'Agadir Ida-Outanane", "عمالة أكادير إداوتنان"),
        ("inezgane_ait_melloul", "Préfecture d'Inezgane-Aït Melloul", "عمالة إنزكان - أيت ملول"),
        ("chtouka_ait_baha", "Chtouka-Aït Baha", "اشتوكة - أيت باها"),
        ("taroudant", "Taroudant", "تارودانت"),
        ("tiznit", "Tiznit", "تيزنيت"),
        ("tata", "Tata", "طاطا"),
    ),
    "guelmim_oued_noun": (
        ("guelmim", "Guelmim", "كلميم"),
        ("assa_zag", "Assa-Zag", "أسا - الزاك"),
        ("tan_tan", "Tan-Tan", "طانطان"),
        ("sidi_ifni", "Sidi Ifni", "سيدي إفني"),
    ),
    "laayoune_sakia_el_hamra": (
        ("laayoune", "Laâyoune", "العيون"),
        ("boujdour", "Boujdour", "بوجدور"),
        ("tarfaya", "Tarfaya", "طرفاية"),
        ("es_semara", "Es-Semara", "السمارة"),
    ),
    "dakhla_oued_ed_dahab": (
        ("oued_ed_dahab", "Oued Ed-Dahab", "وادي الذهب"),
        ("aousserd", "Aousserd", "أوسرد"),
    ),
}

MOROCCAN_PHONE = "regex(., '^0[5-7][0-9]{8}$')"
PHONE_MESSAGE = (
    "Numéro marocain à 10 chiffres commençant par 05, 06 ou 07.",
    "رقم مغربي من 10 أرقام يبدأ بـ 05 أو 06 أو 07.",
)
NOT_IN_FUTURE = (
    ". <= today()",
    "La date ne peut pas être dans le futur.",
    "لا يمكن أن يكون التاريخ في المستقبل.",
)
PHOTO_PARAMETERS = "max-pixels=1024"


def region_choice_rows() -> list[Row]:
    """Return the ``region`` list and the ``province`` list filtered by its ``region`` column."""
    rows = choice_rows("region", REGIONS)
    for region, provinces in PROVINCES.items():
        rows.extend(choice_rows("province", provinces, region=region))
    return rows


def coop_diagnostic_survey() -> list[Row]:
    """Return the survey rows of the cooperative strategic diagnostic."""
    return [
        *metadata_rows(),
        question(
            "note",
            "intro",
            "Ce questionnaire accompagne le diagnostic stratégique réalisé par le coach avec le bureau "
            "de la coopérative.",
            "ترافق هذه الاستمارة التشخيص الاستراتيجي الذي ينجزه المؤطر مع مكتب التعاونية.",
        ),
        question("begin_group", "identification", "Identification de la coopérative", "تعريف التعاونية"),
        question("text", "coop_name", "Nom de la coopérative", "اسم التعاونية", required=True),
        question(
            "text",
            "registration_number",
            "Numéro d'immatriculation",
            "رقم التسجيل",
            hint=(
                "Tel qu'indiqué sur le certificat d'immatriculation au registre des coopératives.",
                "كما هو مدون في شهادة التسجيل في سجل التعاونيات.",
            ),
            required=True,
        ),
        question("date", "creation_date", "Date de création", "تاريخ التأسيس", constraint=NOT_IN_FUTURE, required=True),
        question("select_one legal_form", "legal_form", "Forme juridique", "الشكل القانوني", required=True),
        question(
            "text",
            "contact_phone",
            "Téléphone du contact",
            "هاتف الشخص المكلف بالتواصل",
            hint=("10 chiffres, par exemple 0612345678.", "10 أرقام، مثال: 0612345678."),
            constraint=(MOROCCAN_PHONE, *PHONE_MESSAGE),
            required=True,
            appearance="numbers",
        ),
        end("group"),
        question("begin_group", "location", "Localisation", "الموقع"),
        question("select_one region", "region", "Région", "الجهة", required=True),
        question(
            "select_one province",
            "province",
            "Province ou préfecture",
            "الإقليم أو العمالة",
            required=True,
            choice_filter="region=${region}",
        ),
        question("text", "commune", "Commune", "الجماعة", required=True),
        question("select_one commune_type", "commune_type", "Type de commune", "نوع الجماعة", required=True),
        question("text", "douar", "Douar ou quartier", "الدوار أو الحي"),
        question(
            "geopoint",
            "gps",
            "Position GPS du local",
            "الموقع الجغرافي لمقر التعاونية",
            hint=(
                "Attendre une précision inférieure à 10 mètres.",
                "انتظر حتى تصبح الدقة أقل من 10 أمتار.",
            ),
            required=True,
        ),
        question(
            "image",
            "premises_photo",
            "Photo du local",
            "صورة مقر التعاونية",
            parameters=PHOTO_PARAMETERS,
        ),
        end("group"),
        question("begin_group", "members", "Membres", "الأعضاء"),
        question(
            "integer",
            "members_total",
            "Nombre total de membres",
            "العدد الإجمالي للأعضاء",
            constraint=(". > 0 and . <= 5000", "Entre 1 et 5000 membres.", "ما بين 1 و 5000 عضو."),
            required=True,
        ),
        question(
            "decimal",
            "women_share",
            "Part des femmes parmi les membres (%)",
            "نسبة النساء من بين الأعضاء (%)",
            constraint=(
                ". >= 0 and . <= 100",
                "La part doit être comprise entre 0 et 100.",
                "يجب أن تكون النسبة بين 0 و 100.",
            ),
            required=True,
        ),
        question("calculate", "women_members", calculation="round(${members_total} * ${women_share} div 100, 0)"),
        question(
            "note",
            "women_members_note",
            "Soit environ ${women_members} femmes membres.",
            "أي حوالي ${women_members} من العضوات.",
        ),
        question(
            "integer",
            "young_members",
            "Nombre de membres de moins de 35 ans",
            "عدد الأعضاء الذين تقل أعمارهم عن 35 سنة",
            constraint=(
                ". >= 0 and . <= ${members_total}",
                "Ne peut pas dépasser le nombre total de membres.",
                "لا يمكن أن يتجاوز العدد الإجمالي للأعضاء.",
            ),
        ),
        question("begin_repeat", "board_member", "Membre du bureau", "عضو المكتب"),
        question("text", "board_name", "Nom et prénom", "الاسم الكامل", required=True),
        question("select_one board_role", "board_role", "Fonction", "المهمة", required=True),
        question("select_one gender", "board_gender", "Sexe", "الجنس", required=True),
        question(
            "integer",
            "board_age",
            "Âge",
            "السن",
            constraint=(
                ". >= 16 and . <= 99",
                "L'âge doit être compris entre 16 et 99 ans.",
                "يجب أن يكون السن بين 16 و 99 سنة.",
            ),
            required=True,
        ),
        end("repeat"),
        question("calculate", "board_size", calculation="count(${board_member})"),
        question(
            "calculate",
            "board_women",
            calculation="count(${board_member}[board_gender = 'female'])",
        ),
        question(
            "note",
            "board_note",
            "Le bureau compte ${board_size} membres dont ${board_women} femmes.",
            "يضم المكتب ${board_size} أعضاء من بينهم ${board_women} نساء.",
        ),
        end("group"),
        question("begin_group", "products", "Produits et commercialisation", "المنتجات والتسويق"),
        question("begin_repeat", "product", "Produit", "منتوج"),
        question(
            "select_one product_category", "product_category", "Catégorie de produit", "صنف المنتوج", required=True
        ),
        question("text", "product_name", "Nom commercial du produit", "الاسم التجاري للمنتوج", required=True),
        question("select_one unit", "product_unit", "Unité de vente", "وحدة البيع", required=True),
        question("begin_repeat", "sales_channel", "Canal de vente", "قناة البيع"),
        question("select_one channel", "channel", "Canal", "القناة", required=True),
        question(
            "decimal",
            "channel_share",
            "Part des ventes du produit (%)",
            "حصة مبيعات المنتوج (%)",
            constraint=(
                ". > 0 and . <= 100",
                "La part doit être comprise entre 0 et 100.",
                "يجب أن تكون الحصة بين 0 و 100.",
            ),
            required=True,
        ),
        question(
            "decimal",
            "monthly_volume",
            "Volume mensuel vendu",
            "الكمية المباعة شهريا",
            hint=("Dans l'unité de vente du produit.", "بوحدة بيع المنتوج."),
            constraint=(". >= 0", "Le volume ne peut pas être négatif.", "لا يمكن أن تكون الكمية سالبة."),
        ),
        end("repeat"),
        question("calculate", "channels_share_total", calculation="sum(${channel_share})"),
        question(
            "note",
            "channels_share_warning",
            "Attention : les parts des canaux totalisent ${channels_share_total} % au lieu de 100 %.",
            "تنبيه: مجموع حصص القنوات هو ${channels_share_total}% بدلا من 100%.",
            relevant="${channels_share_total} != 100",
        ),
        end("repeat"),
        question(
            "decimal",
            "revenue_last_year",
            "Chiffre d'affaires de l'année dernière (MAD)",
            "رقم معاملات السنة الماضية (بالدرهم)",
            constraint=(". >= 0", "Le montant ne peut pas être négatif.", "لا يمكن أن يكون المبلغ سالبا."),
            required=True,
        ),
        question(
            "calculate",
            "revenue_per_member",
            calculation="if(${members_total} > 0, round(${revenue_last_year} div ${members_total}, 2), 0)",
        ),
        question(
            "note",
            "revenue_note",
            "Chiffre d'affaires par membre : ${revenue_per_member} MAD.",
            "رقم المعاملات لكل عضو: ${revenue_per_member} درهم.",
        ),
        end("group"),
        question("begin_group", "support_needs", "Besoins d'accompagnement", "حاجيات المواكبة"),
        question(
            "select_multiple need",
            "needs",
            "Quels sont les besoins prioritaires de la coopérative ?",
            "ما هي الحاجيات ذات الأولوية للتعاونية؟",
            hint=("Plusieurs réponses possibles.", "يمكن اختيار أكثر من جواب."),
            required=True,
        ),
        question(
            "text",
            "needs_other",
            "Précisez l'autre besoin",
            "حدد الحاجة الأخرى",
            required=True,
            relevant="selected(${needs}, 'other')",
        ),
        question(
            "text",
            "coach_comments",
            "Observations du coach",
            "ملاحظات المؤطر",
            appearance="multiline",
        ),
        end("group"),
    ]


def coop_diagnostic_choices() -> list[Row]:
    """Return the choices rows of the cooperative strategic diagnostic."""
    return [
        *choice_rows(
            "legal_form",
            (
                ("cooperative", "Coopérative (loi 112-12)", "تعاونية (القانون 112.12)"),
                ("union", "Union de coopératives", "اتحاد تعاونيات"),
                ("gie", "Groupement d'intérêt économique", "مجموعة ذات نفع اقتصادي"),
                ("association", "Association", "جمعية"),
            ),
        ),
        *region_choice_rows(),
        *choice_rows("commune_type", (("rural", "Rurale", "قروية"), ("urban", "Urbaine", "حضرية"))),
        *choice_rows(
            "board_role",
            (
                ("president", "Président(e)", "الرئيس(ة)"),
                ("vice_president", "Vice-président(e)", "نائب(ة) الرئيس"),
                ("secretary", "Secrétaire général(e)", "الكاتب(ة) العام(ة)"),
                ("treasurer", "Trésorier(ère)", "أمين(ة) المال"),
                ("advisor", "Conseiller(ère)", "مستشار(ة)"),
            ),
        ),
        *choice_rows("gender", (("female", "Femme", "امرأة"), ("male", "Homme", "رجل"))),
        *choice_rows(
            "product_category",
            (
                ("argan_oil", "Huile d'argan", "زيت الأركان"),
                ("olive_oil", "Huile d'olive", "زيت الزيتون"),
                ("honey", "Miel", "العسل"),
                ("saffron", "Safran", "الزعفران"),
                ("dates", "Dattes", "التمور"),
                ("couscous", "Couscous et produits céréaliers", "الكسكس ومنتجات الحبوب"),
                ("aromatic_plants", "Plantes aromatiques et médicinales", "النباتات العطرية والطبية"),
                ("cactus", "Produits du cactus (figue de Barbarie)", "منتجات الصبار (التين الشوكي)"),
                ("dairy", "Produits laitiers", "منتجات الحليب"),
                ("carpets", "Tapis et tissage", "الزرابي والنسيج"),
                ("pottery", "Poterie", "الفخار"),
                ("other", "Autre", "أخرى"),
            ),
        ),
        *choice_rows(
            "unit",
            (
                ("kg", "Kilogramme", "كيلوغرام"),
                ("litre", "Litre", "لتر"),
                ("piece", "Pièce", "قطعة"),
                ("m2", "Mètre carré", "متر مربع"),
            ),
        ),
        *choice_rows(
            "channel",
            (
                ("souk", "Souk hebdomadaire", "السوق الأسبوعي"),
                ("on_site", "Vente sur place", "البيع في عين المكان"),
                ("intermediary", "Intermédiaires", "الوسطاء"),
                ("fairs", "Foires et salons", "المعارض"),
                ("retail", "Grandes surfaces et épiceries", "المتاجر الكبرى ومحلات البقالة"),
                ("online", "Vente en ligne et réseaux sociaux", "البيع عبر الإنترنت ومواقع التواصل الاجتماعي"),
                ("export", "Export", "التصدير"),
            ),
        ),
        *choice_rows(
            "need",
            (
                ("financing", "Financement", "التمويل"),
                ("training", "Formation", "التكوين"),
                ("equipment", "Équipement", "التجهيزات"),
                ("marketing", "Commercialisation", "التسويق"),
                (
                    "certification",
                    "Certification et labels (ONSSA, bio, IGP)",
                    "الإشهاد والعلامات (أونسا، المنتوج البيولوجي، البيان الجغرافي المحمي)",
                ),
                ("digital", "Outils numériques", "الأدوات الرقمية"),
                ("packaging", "Emballage et étiquetage", "التلفيف ووضع الملصقات"),
                ("governance", "Gouvernance et gestion", "الحكامة والتسيير"),
                ("other", "Autre", "أخرى"),
            ),
        ),
    ]


def coop_diagnostic_sheets() -> Sheets:
    """Return every sheet of ``coop_diagnostic.xlsx``."""
    return {
        "survey": coop_diagnostic_survey(),
        "choices": coop_diagnostic_choices(),
        "settings": [
            {
                "form_title": "Diagnostic stratégique de coopérative / التشخيص الاستراتيجي للتعاونية",
                "form_id": "coop_diagnostic",
                "version": "2026112901",
                "default_language": FR,
                "instance_name": "concat(${coop_name}, ' – ', ${today})",
            }
        ],
    }


def _existing(prop: str) -> str:
    """Return the XPath of a property of the entrepreneur picked from the list (``entrepreneurs.csv``)."""
    return f"instance('entrepreneurs')/root/item[name=${{entrepreneur}}]/{prop}"


def entrepreneur_followup_survey() -> list[Row]:
    """Return the survey rows of the women entrepreneurs follow-up visit."""
    return [
        *metadata_rows(),
        question(
            "note",
            "intro",
            "Visite de suivi d'une entrepreneure accompagnée par le programme.",
            "زيارة تتبع لمقاولة يواكبها البرنامج.",
        ),
        question("begin_group", "profile", "Entrepreneure", "المقاولة"),
        question("select_one visit_kind", "visit_kind", "Type de visite", "نوع الزيارة", required=True),
        question(
            "select_one_from_file entrepreneurs.csv",
            "entrepreneur",
            "Choisir l'entrepreneure",
            "اختر المقاولة",
            hint=("Tapez une partie du nom pour filtrer.", "اكتب جزءا من الاسم للبحث."),
            required=True,
            relevant="${visit_kind} = 'existing'",
            appearance="autocomplete",
        ),
        question(
            "text",
            "full_name",
            "Nom et prénom de l'entrepreneure",
            "الاسم الكامل للمقاولة",
            required=True,
            relevant="${visit_kind} = 'new'",
        ),
        # A new entrepreneur keeps the same identifier when the form is reopened (once), so an edited
        # draft does not create a second entity.
        question("calculate", "new_entrepreneur_id", calculation="once(uuid())"),
        question(
            "calculate",
            "entrepreneur_name",
            calculation=f"if(${{visit_kind}} = 'new', ${{full_name}}, {_existing('full_name')})",
            save_to="full_name",
        ),
        # The trigger pre-fills the last known value when an existing entrepreneur is picked; the
        # coach can still correct it.
        question(
            "text",
            "phone",
            "Téléphone",
            "الهاتف",
            hint=("10 chiffres, par exemple 0661234567.", "10 أرقام، مثال: 0661234567."),
            constraint=(MOROCCAN_PHONE, *PHONE_MESSAGE),
            required=True,
            appearance="numbers",
            trigger="${entrepreneur}",
            calculation=_existing("phone"),
            save_to="phone",
        ),
        question(
            "text",
            "commune",
            "Commune",
            "الجماعة",
            required=True,
            trigger="${entrepreneur}",
            calculation=_existing("commune"),
            save_to="commune",
        ),
        question(
            "select_one programme",
            "programme",
            "Programme d'accompagnement",
            "برنامج المواكبة",
            required=True,
            trigger="${entrepreneur}",
            calculation=_existing("programme"),
            save_to="programme",
        ),
        question("select_one sector", "sector", "Secteur d'activité", "قطاع النشاط", required=True, save_to="sector"),
        question(
            "select_one legal_status",
            "legal_status",
            "Statut juridique de l'activité",
            "الوضع القانوني للنشاط",
            required=True,
            save_to="legal_status",
        ),
        end("group"),
        question("begin_group", "activity", "Activité", "النشاط"),
        question("select_one stage", "stage", "Stade du projet", "مرحلة المشروع", required=True, save_to="stage"),
        question(
            "calculate",
            "previous_income",
            calculation=f"if(${{visit_kind}} = 'existing', {_existing('monthly_income')}, '')",
        ),
        question(
            "note",
            "previous_income_note",
            "Revenu mensuel déclaré à la visite précédente : ${previous_income} MAD.",
            "الدخل الشهري المصرح به في الزيارة السابقة: ${previous_income} درهم.",
            relevant="${visit_kind} = 'existing'",
        ),
        question(
            "decimal",
            "monthly_income",
            "Revenu mensuel moyen de l'activité (MAD)",
            "متوسط الدخل الشهري من النشاط (بالدرهم)",
            hint=(
                "Bénéfice net estimé sur les trois derniers mois.",
                "الربح الصافي التقديري خلال الأشهر الثلاثة الأخيرة.",
            ),
            constraint=(
                ". >= 0 and . <= 1000000",
                "Montant entre 0 et 1 000 000 MAD.",
                "مبلغ ما بين 0 و 1000000 درهم.",
            ),
            required=True,
            save_to="monthly_income",
        ),
        question(
            "integer",
            "employees",
            "Nombre d'employés (hors entrepreneure)",
            "عدد المستخدمين (دون احتساب المقاولة)",
            constraint=(". >= 0 and . <= 200", "Entre 0 et 200 employés.", "ما بين 0 و 200 مستخدم."),
            required=True,
            save_to="employees",
        ),
        end("group"),
        question("begin_repeat", "coaching_session", "Séance d'accompagnement", "حصة المواكبة"),
        question("date", "session_date", "Date de la séance", "تاريخ الحصة", constraint=NOT_IN_FUTURE, required=True),
        question("select_one topic", "session_topic", "Thème", "الموضوع", required=True),
        question(
            "integer",
            "session_duration",
            "Durée (minutes)",
            "المدة (بالدقائق)",
            constraint=(
                ". >= 15 and . <= 480",
                "Entre 15 minutes et 8 heures.",
                "ما بين 15 دقيقة و 8 ساعات.",
            ),
            required=True,
        ),
        question("text", "session_notes", "Notes de la séance", "ملاحظات الحصة", appearance="multiline"),
        end("repeat"),
        question("calculate", "coaching_minutes", calculation="sum(${session_duration})"),
        question(
            "note",
            "coaching_note",
            "Temps d'accompagnement total : ${coaching_minutes} minutes.",
            "المدة الإجمالية للمواكبة: ${coaching_minutes} دقيقة.",
        ),
        question("begin_group", "closing", "Clôture de la visite", "اختتام الزيارة"),
        question(
            "range",
            "satisfaction",
            "Satisfaction de l'entrepreneure vis-à-vis de l'accompagnement",
            "مدى رضا المقاولة عن المواكبة",
            hint=("1 = pas satisfaite, 5 = très satisfaite.", "1 = غير راضية، 5 = راضية جدا."),
            required=True,
            parameters="start=1 end=5 step=1",
        ),
        question(
            "date",
            "next_visit",
            "Date de la prochaine visite",
            "تاريخ الزيارة المقبلة",
            constraint=(
                ". > today()",
                "La prochaine visite doit être planifiée après aujourd'hui.",
                "يجب أن تكون الزيارة المقبلة بعد اليوم.",
            ),
            required=True,
            save_to="next_visit",
        ),
        question("geopoint", "gps", "Position GPS de l'activité", "الموقع الجغرافي للنشاط", required=True),
        question(
            "image",
            "activity_photo",
            "Photo de l'activité",
            "صورة النشاط",
            parameters=PHOTO_PARAMETERS,
        ),
        question(
            "image",
            "signature",
            "Signature de l'entrepreneure",
            "توقيع المقاولة",
            required=True,
            appearance="signature",
            parameters=PHOTO_PARAMETERS,
        ),
        end("group"),
    ]


def entrepreneur_followup_choices() -> list[Row]:
    """Return the choices rows of the women entrepreneurs follow-up visit."""
    return [
        *choice_rows(
            "visit_kind",
            (
                ("new", "Première visite : nouvelle entrepreneure", "الزيارة الأولى: مقاولة جديدة"),
                ("existing", "Suivi d'une entrepreneure déjà enregistrée", "تتبع مقاولة مسجلة من قبل"),
            ),
        ),
        *choice_rows(
            "programme",
            (
                (
                    "indh_p3",
                    "INDH – Programme 3 : revenu et inclusion économique des jeunes",
                    "المبادرة الوطنية للتنمية البشرية – البرنامج 3: تحسين الدخل والإدماج الاقتصادي للشباب",
                ),
                ("forsa", "Programme Forsa", "برنامج فرصة"),
                ("intelaka", "Programme Intelaka", "برنامج انطلاقة"),
                ("local_incubator", "Incubateur local de l'association", "الحاضنة المحلية للجمعية"),
            ),
        ),
        *choice_rows(
            "sector",
            (
                ("agrifood", "Agriculture et agroalimentaire", "الفلاحة والصناعة الغذائية"),
                ("crafts", "Artisanat", "الصناعة التقليدية"),
                ("textile", "Couture et textile", "الخياطة والنسيج"),
                ("trade", "Commerce de proximité", "تجارة القرب"),
                ("services", "Services", "الخدمات"),
                ("tourism", "Tourisme rural", "السياحة القروية"),
            ),
        ),
        *choice_rows(
            "legal_status",
            (
                ("informal", "Activité informelle", "نشاط غير مهيكل"),
                ("auto_entrepreneur", "Auto-entrepreneur", "مقاول ذاتي"),
                ("cooperative", "Membre d'une coopérative", "عضوة في تعاونية"),
                ("company", "Société (SARL ou SARL AU)", "شركة (ش.م.م أو ش.م.م بشريك وحيد)"),
            ),
        ),
        *choice_rows(
            "stage",
            (
                ("idea", "Idée de projet", "فكرة مشروع"),
                ("startup", "Démarrage", "انطلاق"),
                ("growth", "Croissance", "نمو"),
                ("consolidated", "Consolidée", "توطيد"),
            ),
        ),
        *choice_rows(
            "topic",
            (
                ("business_plan", "Plan d'affaires", "مخطط الأعمال"),
                ("bookkeeping", "Comptabilité simplifiée", "المحاسبة المبسطة"),
                ("pricing", "Calcul des coûts et fixation des prix", "حساب التكاليف وتحديد الأسعار"),
                ("marketing", "Marketing et vente", "التسويق والبيع"),
                ("digital", "Marketing digital", "التسويق الرقمي"),
                ("financing", "Accès au financement", "الولوج إلى التمويل"),
                ("formalisation", "Formalisation (statut d'auto-entrepreneur)", "التقنين (نظام المقاول الذاتي)"),
                ("leadership", "Leadership et confiance en soi", "القيادة والثقة بالنفس"),
            ),
        ),
    ]


def entrepreneur_followup_sheets() -> Sheets:
    """Return every sheet of ``entrepreneur_followup.xlsx``, including its ``entities`` sheet."""
    return {
        "survey": entrepreneur_followup_survey(),
        "choices": entrepreneur_followup_choices(),
        # One declaration that both creates (first visit) and updates (follow-up): pyxform requires
        # entity_id together with create_if and update_if, which must exclude each other.
        "entities": [
            {
                "list_name": "entrepreneurs",
                "label": "concat(${entrepreneur_name}, ' – ', ${commune})",
                "entity_id": "if(${visit_kind} = 'existing', ${entrepreneur}, ${new_entrepreneur_id})",
                "create_if": "${visit_kind} = 'new'",
                "update_if": "${visit_kind} = 'existing'",
            }
        ],
        "settings": [
            {
                "form_title": "Suivi des femmes entrepreneures / متابعة النساء المقاولات",
                "form_id": "entrepreneur_followup",
                "version": "2026112901",
                "default_language": FR,
                "instance_name": "concat(${entrepreneur_name}, ' – ', ${today})",
            }
        ],
    }


# The programmes a beneficiary is enrolled in (the demo's synthetic programme follows them).
PROGRAMMES: tuple[tuple[str, str, str], ...] = (
    ("al_montija", "Al Montija (femmes rurales, Safi)", "المنتجة (النساء القرويات، آسفي)"),
    ("women_empowerment_center", "Women Empowerment Center (Khouribga)", "مركز تمكين النساء (خريبكة)"),
    ("femmpact", "Femmpact (Côte d'Ivoire, Sénégal)", "فامباكت (كوت ديفوار، السنغال)"),
    ("cooperatives", "Accompagnement des coopératives", "مواكبة التعاونيات"),
    ("youth_employability", "Employabilité des jeunes", "قابلية تشغيل الشباب"),
)


def beneficiary_registration_survey() -> list[Row]:
    """Return the survey rows of the beneficiary registration (the programme's direct beneficiaries)."""
    yes_no = "select_one yes_no"
    return [
        *metadata_rows(),
        question("begin_group", "beneficiary", "Bénéficiaire", "المستفيد(ة)"),
        question("text", "full_name", "Nom et prénom", "الاسم الكامل", required=True),
        question("select_one sex", "sex", "Sexe", "الجنس", required=True),
        question(
            "integer",
            "age",
            "Âge",
            "السن",
            constraint=(". >= 12 and . <= 99", "Entre 12 et 99 ans.", "ما بين 12 و 99 سنة."),
            required=True,
        ),
        question(
            yes_no,
            "neet",
            "Ni en emploi, ni en études, ni en formation (NEET) ?",
            "لا يعمل ولا يدرس ولا يتابع تكوينا؟",
            required=True,
        ),
        end("group"),
        question("begin_group", "location", "Localisation", "الموقع"),
        question("select_one region", "region", "Région", "الجهة", required=True),
        question("select_one area", "area", "Milieu", "الوسط", required=True),
        question("text", "commune", "Commune", "الجماعة"),
        end("group"),
        question("select_one programme", "programme", "Programme", "البرنامج", required=True),
        question("date", "enrolled_on", "Date d'inscription", "تاريخ التسجيل", required=True),
    ]


def beneficiary_registration_sheets() -> Sheets:
    """Return every sheet of ``beneficiary_registration.xlsx``."""
    choices = [
        *choice_rows("sex", (("female", "Femme", "امرأة"), ("male", "Homme", "رجل"))),
        *choice_rows("yes_no", (("yes", "Oui", "نعم"), ("no", "Non", "لا"))),
        *choice_rows("area", (("rural", "Rural", "قروي"), ("urban", "Urbain", "حضري"))),
        *choice_rows("region", REGIONS),
        *choice_rows("programme", PROGRAMMES),
    ]
    return {
        "survey": beneficiary_registration_survey(),
        "choices": choices,
        "settings": [
            {
                "form_title": "Inscription des bénéficiaires / تسجيل المستفيدين",
                "form_id": "beneficiary_registration",
                "version": "2026120201",
                "default_language": FR,
                "instance_name": "concat(${full_name}, ' – ', ${enrolled_on})",
            }
        ],
    }


def sheet_columns(sheet_name: str, rows: Sequence[Row]) -> list[str]:
    """Return the header of a sheet: known columns in a readable order, then any others."""
    present = {column for row in rows for column in row}
    if sheet_name == "survey":
        preferred = [
            *PLAIN_SURVEY_COLUMNS[:2],
            *(f"{column}::{language}" for column in TRANSLATED_SURVEY_COLUMNS for language in LANGUAGES),
            *PLAIN_SURVEY_COLUMNS[2:],
        ]
    elif sheet_name == "choices":
        preferred = ["list_name", "name", *(f"label::{language}" for language in LANGUAGES)]
    else:
        preferred = []
    ordered = [column for column in preferred if column in present]
    seen = set(ordered)
    for row in rows:
        for column in row:
            if column not in seen:
                ordered.append(column)
                seen.add(column)
    return ordered


def write_xlsform(path: Path, sheets: Sheets) -> None:
    """Write ``sheets`` as an XLSForm workbook at ``path`` (one header row, then one row per dict)."""
    workbook = Workbook()
    workbook.remove(workbook.active)
    workbook.properties.creator = "Fieldsync examples"
    workbook.properties.created = WORKBOOK_CREATED
    for sheet_name, rows in sheets.items():
        worksheet = workbook.create_sheet(sheet_name)
        columns = sheet_columns(sheet_name, rows)
        worksheet.append(columns)
        for row in rows:
            worksheet.append([row.get(column, "") or None for column in columns])
    buffer = io.BytesIO()
    workbook.save(buffer)
    path.write_bytes(_with_fixed_timestamps(buffer.getvalue()))


def _with_fixed_timestamps(xlsx: bytes) -> bytes:
    """Return the zip with every member dated ``WORKBOOK_CREATED``, so rebuilding gives identical bytes."""
    output = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as source, zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            info = zipfile.ZipInfo(member.filename, date_time=WORKBOOK_CREATED.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            content = source.read(member)
            if member.filename == "docProps/core.xml":
                # openpyxl stamps "modified" with the current time on every save.
                content = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + WORKBOOK_STAMP.encode(), content)
            target.writestr(info, content)
    return output.getvalue()


def example_forms() -> dict[str, Sheets]:
    """Return the sheets of every example form, keyed by the ``.xlsx`` file name."""
    return {
        "coop_diagnostic.xlsx": coop_diagnostic_sheets(),
        "entrepreneur_followup.xlsx": entrepreneur_followup_sheets(),
        "beneficiary_registration.xlsx": beneficiary_registration_sheets(),
    }


def build(directory: Path = FORMS_DIR) -> list[Path]:
    """Write every example form into ``directory`` and return the written paths."""
    written = []
    for file_name, sheets in example_forms().items():
        path = directory / file_name
        write_xlsform(path, sheets)
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in build():
        print(written_path)
