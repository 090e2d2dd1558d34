"""The console's languages: French, Arabic and English gettext catalogues, the locale of each request, RTL.

The catalogues (``translations/<locale>/LC_MESSAGES/messages.po``) are compiled in memory when the app
starts: there is no ``.mo`` file to build, forget or leave stale, and three small catalogues compile in a
few milliseconds. The locale of a request is the signed-in user's stored choice, else the best match of
``Accept-Language``, else French (the programme's working language).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from flask import Flask, g, request
from flask_babel import Babel, Domain

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DEFAULT_LOCALE = "fr"


@dataclass(frozen=True)
class ConsoleLocale:
    """A language the console speaks: its code, its own name (for the switcher) and its direction."""

    code: str
    name: str
    rtl: bool = False


# In the order the switcher shows them; each name is written in its own language, never translated.
LOCALES = (
    ConsoleLocale("fr", "Français"),
    ConsoleLocale("ar", "العربية", rtl=True),
    ConsoleLocale("en", "English"),
)
LOCALE_CODES = tuple(locale.code for locale in LOCALES)


def compile_catalogue(po_path: Path) -> Translations:
    """Read one ``.po`` file and return its translations, compiled in memory."""
    with po_path.open("rb") as handle:
        catalogue = read_po(handle, locale=po_path.parent.parent.name)
    buffer = io.BytesIO()
    write_mo(buffer, catalogue, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer)


class InMemoryDomain(Domain):
    """Flask-Babel's domain, with catalogues compiled from the ``.po`` files once, at app start."""

    def __init__(self) -> None:
        super().__init__(translation_directories=[str(TRANSLATIONS_DIR)])
        self._compiled: dict[str, Translations] = {}
        for code in LOCALE_CODES:
            po = TRANSLATIONS_DIR / code / "LC_MESSAGES" / "messages.po"
            if po.exists():
                self._compiled[code] = compile_catalogue(po)

    def get_translations(self) -> Translations:
        """Return the compiled catalogue of this request's locale (English falls back to the source text)."""
        from flask_babel import get_locale

        locale = get_locale()
        code = locale.language if locale is not None else DEFAULT_LOCALE
        return self._compiled.get(code) or Translations()


def select_locale() -> str:
    """The locale of this request: the user's stored choice, else ``Accept-Language``, else French."""
    chosen = g.get("console_locale")
    if chosen in LOCALE_CODES:
        return str(chosen)
    return request.accept_languages.best_match(LOCALE_CODES) or DEFAULT_LOCALE


def current_locale() -> ConsoleLocale:
    """The ``ConsoleLocale`` of this request (for ``<html lang dir>``)."""
    code = select_locale()
    return next(locale for locale in LOCALES if locale.code == code)


def locale_display_name(code: str) -> str:
    """A language's name in the current locale (for form languages such as ``Arabic (ar)``)."""
    try:
        return Locale.parse(code).get_display_name(select_locale()) or code
    except (ValueError, TypeError):
        return code


class ConsoleBabel(Babel):
    """Flask-Babel whose message domain is the in-memory one."""

    @cached_property
    def domain_instance(self) -> Domain:
        """The console's catalogues, compiled once for this app."""
        return InMemoryDomain()


def init_app(app: Flask) -> None:
    """Set up Flask-Babel with the in-memory catalogues and the locale selector."""
    babel = ConsoleBabel()
    babel.init_app(app, locale_selector=select_locale, default_timezone="UTC")
    babel.domain_instance  # noqa: B018  (compile the catalogues at start, not on the first page)
