"""The console's gettext catalogues: ``messages.pot`` is what the code says today, and every locale
translates every message (none empty, none fuzzy, the same ``%(name)s`` placeholders).

When this fails after changing a page, run ``make messages`` and translate what it added.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from server.console.i18n import LOCALE_CODES, TRANSLATIONS_DIR

CONSOLE_DIR = TRANSLATIONS_DIR.parent
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def extract(target: Path) -> None:
    """Extract the console's messages exactly as ``make messages`` does."""
    CommandLineInterface().run(
        [
            "pybabel",
            "--quiet",
            "extract",
            "-F",
            str(CONSOLE_DIR / "babel.cfg"),
            "-k",
            "lazy_gettext",
            "--no-location",
            "--omit-header",
            "--sort-output",
            "-o",
            str(target),
            str(CONSOLE_DIR),
        ]
    )


def test_messages_pot_is_up_to_date(tmp_path: Path) -> None:
    fresh = tmp_path / "messages.pot"
    extract(fresh)
    committed = (TRANSLATIONS_DIR / "messages.pot").read_text(encoding="utf-8")
    assert fresh.read_text(encoding="utf-8") == committed, "messages.pot is stale: run `make messages`"


@pytest.mark.parametrize("locale", LOCALE_CODES, ids=LOCALE_CODES)
def test_every_message_is_translated(locale: str) -> None:
    with (TRANSLATIONS_DIR / "messages.pot").open("rb") as handle:
        template = {m.id for m in read_po(handle) if m.id}
    with (TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalogue = read_po(handle)
    messages = {m.id: m for m in catalogue if m.id}
    assert sorted(template - set(messages)) == [], f"{locale}: messages missing from the catalogue"
    untranslated = sorted(i for i in template if not messages[i].string)
    fuzzy = sorted(i for i in template if messages[i].fuzzy)
    assert untranslated == [], f"{locale}: untranslated"
    assert fuzzy == [], f"{locale}: fuzzy"
    placeholders = sorted(
        i for i in template if set(PLACEHOLDER.findall(str(i))) != set(PLACEHOLDER.findall(str(messages[i].string)))
    )
    assert placeholders == [], f"{locale}: placeholders differ"
