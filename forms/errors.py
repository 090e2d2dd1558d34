"""The error vocabulary of ``forms``: form upload/conversion errors and submission parsing errors.

Every error carries a stable ``code`` (what the server maps to an HTTP status and a JSON shape),
the original ``message`` (pyxform's text kept verbatim, it names the row) and a ``context`` dict.
French and Arabic translations of the most common messages live here too, so the admin UI can show them while
keeping pyxform's original text available.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# pyxform prefixes many messages with "[row : N]".
_ROW_RE = re.compile(r"\[row\s*:\s*(\d+)\]")
# Sheet names as pyxform writes them: "for sheet: 'survey'", "On the 'choices' sheet", "sheet 'survey'".
_SHEET_RES = (
    re.compile(r"for sheet:\s*'([^']+)'"),
    re.compile(r"[Oo]n the '([^']+)' sheet"),
    re.compile(r"sheet named '([^']+)'"),
    re.compile(r"\bsheet[: ]+'([^']+)'"),
)


class FormError(Exception):
    """A form upload that cannot become a servable XForm; ``code`` is stable, ``message`` is for admins."""

    def __init__(self, code: str, message: str, context: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.context: dict[str, Any] = dict(context or {})

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"FormError(code={self.code!r}, message={self.message!r}, context={self.context!r})"


class SubmissionError(Exception):
    """A submission whose XML cannot be read or routed; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"SubmissionError(code={self.code!r}, message={self.message!r})"


class XmlRejectedError(Exception):
    """Raised by ``forms.safe_xml`` for untrusted XML; callers turn it into a Form/SubmissionError."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # "xml_malformed", "xml_unsafe", "xml_too_deep", "xml_too_large"
        self.message = message


def pyxform_context(message: str) -> dict[str, Any]:
    """Return ``{"row": N, "sheet": name}`` (each only when found) parsed from a pyxform message."""
    context: dict[str, Any] = {}
    row = _ROW_RE.search(message)
    if row:
        context["row"] = int(row.group(1))
    for pattern in _SHEET_RES:
        sheet = pattern.search(message)
        if sheet:
            context["sheet"] = sheet.group(1)
            break
    if "row" in context and "sheet" not in context:
        # pyxform's bare "[row : N]" counts rows of the survey sheet.
        context["sheet"] = "survey"
    return context


# Our own messages, by code, in French and Arabic. pyxform's own messages are matched by pattern below.
_BY_CODE: dict[str, dict[str, str]] = {
    "not_a_spreadsheet": {
        "fr": "Le fichier n'est pas un classeur XLSForm (.xlsx ou .xls) ni un XForm (.xml).",
        "ar": "الملف ليس مصنّف XLSForm (‎.xlsx أو ‎.xls) ولا XForm (‎.xml).",
    },
    "corrupt_spreadsheet": {
        "fr": "Le classeur est endommagé et ne peut pas être lu.",
        "ar": "المصنّف تالف ولا يمكن قراءته.",
    },
    "spreadsheet_too_large": {
        "fr": "Le classeur est trop volumineux une fois décompressé.",
        "ar": "المصنّف كبير جدًّا بعد فكّ ضغطه.",
    },
    "missing_form_id": {
        "fr": "Ajoutez la colonne form_id dans la feuille settings pour identifier le formulaire.",
        "ar": "أضِف العمود form_id في الورقة settings لتعريف الاستمارة.",
    },
    "xform_unsafe": {
        "fr": "Le XForm contient une déclaration DOCTYPE ou ENTITY, interdite pour des raisons de sécurité.",
        "ar": "يحتوي ملف XForm على تصريح DOCTYPE أو ENTITY، وهذا ممنوع لأسباب أمنية.",
    },
    "xform_invalid": {
        "fr": "Le fichier XML n'est pas un XForm valide.",
        "ar": "ملف XML ليس XForm صالحًا.",
    },
    "conversion_failed": {
        "fr": "La conversion du formulaire a échoué.",
        "ar": "فشل تحويل الاستمارة.",
    },
}

# (pattern in pyxform's English message, {language: template using the pattern's groups})
_PATTERNS: tuple[tuple[re.Pattern[str], dict[str, str]], ...] = (
    (
        re.compile(r"Unknown question type '([^']*)'"),
        {"fr": "Type de question inconnu « {0} ».", "ar": "نوع سؤال غير معروف «{0}»."},
    ),
    (
        re.compile(r"List name not in choices sheet: (\S+)"),
        {"fr": "Liste absente de la feuille choices : {0}.", "ar": "القائمة غير موجودة في الورقة choices: {0}."},
    ),
    (
        re.compile(r"Duplicate column header: (\S+)"),
        {"fr": "En-tête de colonne en double : {0}.", "ar": "عنوان عمود مكرّر: {0}."},
    ),
    (
        re.compile(r"Choice names must be unique for each choice list"),
        {
            "fr": "Les noms de choix doivent être uniques dans chaque liste (ou utilisez le paramètre "
            "« allow_choice_duplicates »).",
            "ar": "يجب أن تكون أسماء الخيارات فريدة في كل قائمة (أو استعمل الإعداد «allow_choice_duplicates»).",
        },
    ),
    (
        re.compile(r"Missing calculation"),
        {"fr": "Calcul manquant (colonne calculation).", "ar": "الحساب مفقود (العمود calculation)."},
    ),
    (re.compile(r"Unmatched '(\w+)'"), {"fr": "« {0} » sans fin correspondante.", "ar": "«{0}» بلا نهاية مقابلة."}),
    (
        re.compile(r"Could not find the name '([^']*)'"),
        {
            "fr": "Référence inconnue : aucune question nommée « {0} » dans la feuille survey.",
            "ar": "مرجع غير معروف: لا يوجد سؤال باسم «{0}» في الورقة survey.",
        },
    ),
    (
        re.compile(r"There should be a choices sheet"),
        {"fr": "Le formulaire doit contenir une feuille choices.", "ar": "يجب أن تحتوي الاستمارة على الورقة choices."},
    ),
    (
        re.compile(r"has no label or hint"),
        {
            "fr": "Une question n'a ni libellé (label) ni indication (hint).",
            "ar": "سؤال بلا عنوان (label) ولا تلميح (hint).",
        },
    ),
    (
        re.compile(r"Headers that are different names for the same column were found: (.+?)\. "),
        {
            "fr": "Deux en-têtes désignent la même colonne : {0}. Renommez ou supprimez l'une d'elles.",
            "ar": "عنوانان يدلّان على العمود نفسه: {0}. غيّر اسم أحدهما أو احذفه.",
        },
    ),
    (
        re.compile(r"The survey sheet is either empty or missing"),
        {"fr": "La feuille survey est vide ou absente.", "ar": "الورقة survey فارغة أو غير موجودة."},
    ),
    (
        re.compile(r"You must have a sheet named '([^']+)'"),
        {"fr": "Le classeur doit contenir une feuille « {0} ».", "ar": "يجب أن يحتوي المصنّف على ورقة «{0}»."},
    ),
    (
        re.compile(r"the 'name' value '([^']*)' is invalid\. Questions, groups, and repeats must be unique"),
        {
            "fr": "Le nom « {0} » est déjà utilisé : les questions, groupes et répétitions doivent avoir un nom "
            "unique dans leur groupe.",
            "ar": "الاسم «{0}» مستعمل من قبل: يجب أن يكون لكل سؤال ومجموعة وتكرار اسم فريد داخل مجموعته.",
        },
    ),
    (
        re.compile(r"[Dd]uplicate|same name"),
        {
            "fr": "Deux éléments portent le même nom dans le même groupe.",
            "ar": "عنصران يحملان الاسم نفسه في المجموعة نفسها.",
        },
    ),
)

# Where the error is: (with a sheet, without), by language.
_WHERE: dict[str, tuple[str, str]] = {
    "fr": ("[feuille {sheet}, ligne {row}] ", "[ligne {row}] "),
    "ar": ("[الورقة {sheet}، السطر {row}] ", "[السطر {row}] "),
}

#: The languages ``localized_message`` translates into (any other gets pyxform's English).
TRANSLATED_LANGUAGES = tuple(_WHERE)


def localized_message(err: FormError, lang: str) -> str:
    """Return the error message in ``lang`` ("fr" or "ar"), falling back to the original text."""
    lang = lang.lower()[:2]
    if lang not in _WHERE:
        return err.message
    text: str | None = None
    for pattern, templates in _PATTERNS:
        found = pattern.search(err.message)
        if found:
            text = templates[lang].format(*found.groups())
            break
    if text is None and err.code in _BY_CODE:
        text = _BY_CODE[err.code][lang]
    if text is None:
        return err.message
    row = err.context.get("row")
    sheet = err.context.get("sheet")
    if row is not None:
        with_sheet, without = _WHERE[lang]
        text = (with_sheet if sheet else without).format(sheet=sheet, row=row) + text
    return text
