"""The error vocabulary of ``forms``: form upload/conversion errors and submission parsing errors.

Every error carries a stable ``code`` (what the server maps to an HTTP status and a JSON shape),
the original ``message`` (pyxform's text kept verbatim, it names the row) and a ``context`` dict.
French translations of the most common messages live here too, so the admin UI can show them while
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


# Our own messages, by code, in French. pyxform's own messages are matched by pattern below.
_FR_BY_CODE: dict[str, str] = {
    "not_a_spreadsheet": "Le fichier n'est pas un classeur XLSForm (.xlsx ou .xls) ni un XForm (.xml).",
    "corrupt_spreadsheet": "Le classeur est endommagé et ne peut pas être lu.",
    "spreadsheet_too_large": "Le classeur est trop volumineux une fois décompressé.",
    "missing_form_id": "Ajoutez la colonne form_id dans la feuille settings pour identifier le formulaire.",
    "xform_unsafe": (
        "Le XForm contient une déclaration DOCTYPE ou ENTITY, interdite pour des raisons de sécurité."
    ),
    "xform_invalid": "Le fichier XML n'est pas un XForm valide.",
    "conversion_failed": "La conversion du formulaire a échoué.",
}

# (pattern in pyxform's English message, French template using the pattern's groups)
_FR_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Unknown question type '([^']*)'"), "Type de question inconnu « {0} »."),
    (re.compile(r"List name not in choices sheet: (\S+)"), "Liste absente de la feuille choices : {0}."),
    (re.compile(r"Duplicate column header: (\S+)"), "En-tête de colonne en double : {0}."),
    (
        re.compile(r"Choice names must be unique for each choice list"),
        "Les noms de choix doivent être uniques dans chaque liste (ou utilisez le paramètre "
        "« allow_choice_duplicates »).",
    ),
    (re.compile(r"Missing calculation"), "Calcul manquant (colonne calculation)."),
    (re.compile(r"Unmatched '(\w+)'"), "« {0} » sans fin correspondante."),
    (
        re.compile(r"Could not find the name '([^']*)'"),
        "Référence inconnue : aucune question nommée « {0} » dans la feuille survey.",
    ),
    (re.compile(r"There should be a choices sheet"), "Le formulaire doit contenir une feuille choices."),
    (re.compile(r"has no label or hint"), "Une question n'a ni libellé (label) ni indication (hint)."),
    (
        re.compile(r"Headers that are different names for the same column were found: (.+?)\. "),
        "Deux en-têtes désignent la même colonne : {0}. Renommez ou supprimez l'une d'elles.",
    ),
    (
        re.compile(r"The survey sheet is either empty or missing"),
        "La feuille survey est vide ou absente.",
    ),
    (re.compile(r"You must have a sheet named '([^']+)'"), "Le classeur doit contenir une feuille « {0} »."),
    (
        re.compile(r"the 'name' value '([^']*)' is invalid\. Questions, groups, and repeats must be unique"),
        "Le nom « {0} » est déjà utilisé : les questions, groupes et répétitions doivent avoir un nom "
        "unique dans leur groupe.",
    ),
    (re.compile(r"[Dd]uplicate|same name"), "Deux éléments portent le même nom dans le même groupe."),
)


def localized_message(err: FormError, lang: str) -> str:
    """Return the error message in ``lang`` ("fr" supported), falling back to the original text."""
    if not lang.lower().startswith("fr"):
        return err.message
    text: str | None = None
    for pattern, template in _FR_PATTERNS:
        found = pattern.search(err.message)
        if found:
            text = template.format(*found.groups())
            break
    if text is None:
        text = _FR_BY_CODE.get(err.code)
    if text is None:
        return err.message
    row = err.context.get("row")
    sheet = err.context.get("sheet")
    if row is not None:
        where = f"[feuille {sheet}, ligne {row}] " if sheet else f"[ligne {row}] "
        text = where + text
    return text
