"""The forms error vocabulary.

Rules: ER1 sheet and row are read out of pyxform's messages; ER2 French messages exist for the
common errors and keep the location; ER3 the original message stays available for any language.
"""

from __future__ import annotations

import pytest

from forms.errors import FormError, SubmissionError, localized_message, pyxform_context


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("[row : 34] List name not in choices sheet: yes_no", {"row": 34, "sheet": "survey"}),
        (
            "[row : 35] On the 'choices' sheet, the 'name' value is invalid. Choice names must be unique",
            {"row": 35, "sheet": "choices"},
        ),
        ("Invalid headers provided for sheet: 'survey'. Headers ...", {"sheet": "survey"}),
        ("You must have a sheet named 'survey'.", {"sheet": "survey"}),
        ("Unknown question type 'txet'.", {}),
    ],
    ids=["bare-row-is-survey", "choices-sheet", "headers-sheet", "missing-sheet", "no-location"],
)
def test_pyxform_context(message: str, expected: dict[str, object]) -> None:
    """ER1: row and sheet come from the message text."""
    assert pyxform_context(message) == expected


_LIST = FormError(
    "xlsform_invalid", "[row : 34] List name not in choices sheet: yes_no", {"row": 34, "sheet": "survey"}
)
_TYPE = FormError("xlsform_invalid", "Unknown question type 'txet'.")
_OWN = FormError("missing_form_id", "The form has no form_id")


@pytest.mark.parametrize(
    ("error", "lang", "expected"),
    [
        (_LIST, "fr", "[feuille survey, ligne 34] Liste absente de la feuille choices : yes_no."),
        (_TYPE, "fr", "Type de question inconnu « txet »."),
        (_OWN, "fr", "Ajoutez la colonne form_id dans la feuille settings pour identifier le formulaire."),
        (_LIST, "ar", "[الورقة survey، السطر 34] القائمة غير موجودة في الورقة choices: yes_no."),
        (_TYPE, "ar-MA", "نوع سؤال غير معروف «txet»."),
        (_OWN, "ar", "أضِف العمود form_id في الورقة settings لتعريف الاستمارة."),
    ],
    ids=["fr-row-and-list", "fr-unknown-type", "fr-own-code", "ar-row-and-list", "ar-unknown-type", "ar-own-code"],
)
def test_translated_messages(error: FormError, lang: str, expected: str) -> None:
    """ER2: the common messages have a French and an Arabic version, the location in the same language."""
    assert localized_message(error, lang) == expected


def test_original_message_is_kept() -> None:
    """ER3: English (or an unknown message in French) gives pyxform's text unchanged."""
    error = FormError("xlsform_invalid", "Something pyxform said that we never translated.")
    assert localized_message(error, "en") == error.message
    assert localized_message(error, "fr") == error.message
    assert str(error) == error.message


def test_submission_error_has_code() -> None:
    """Errors carry a stable code and the message."""
    error = SubmissionError("no_instance_id", "missing")
    assert (error.code, error.message, str(error)) == ("no_instance_id", "missing", "missing")


def test_every_translation_exists_in_every_translated_language() -> None:
    """ER4: no message is translated into French alone (or Arabic alone)."""
    from forms import errors

    for templates in [*errors._BY_CODE.values(), *(t for _, t in errors._PATTERNS)]:
        assert set(templates) == set(errors.TRANSLATED_LANGUAGES)
        assert all(text.strip() for text in templates.values())
