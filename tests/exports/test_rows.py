"""Rows: the regex-free check for already-clean text agrees with ``normalise_text`` on every kind of text.

Rule checked:
- R1 a free-text cell is exactly ``normalise_text(raw).value`` and counts the same cleaning steps, whether
  the row builder's quick check lets the value through unchanged or sends it to the full cleaning.
"""

from __future__ import annotations

import unicodedata

import pytest

from exports.cleaning import normalise_text
from tests.exports.coop_fixture import coop_values, export_files, record, table_dicts

NFD_FR = unicodedata.normalize("NFD", "Coopérative Drâa")
NFD_AR = unicodedata.normalize("NFD", "تعاونية الأمل")  # Arabic has no decomposition: already NFC

TEXTS = [
    ("plain ascii", "Coop Tifawin"),
    ("nfc french", "Coopérative Drâa"),
    ("nfc arabic", "تعاونية الأمل"),
    ("nfd french", NFD_FR),
    ("nfd arabic", NFD_AR),
    ("leading space", " Coop"),
    ("trailing space", "Coop "),
    ("double space", "Coop  Tifawin"),
    ("tab", "Coop\tTifawin"),
    ("no-break space", "Coop\u00a0Tifawin"),
    ("narrow no-break space", "Coop\u202fTifawin"),
    ("newline kept", "Coop\nTifawin"),
    ("space before newline", "Coop \nTifawin"),
    ("carriage return", "Coop\r\nTifawin"),
    ("line separator", "Coop\u2028Tifawin"),
    ("control character", "Coop\x1eTifawin"),
    ("only spaces", "   "),
    ("empty", ""),
]


@pytest.mark.parametrize("raw", [t for _, t in TEXTS], ids=[i for i, _ in TEXTS])
def test_text_cell_is_what_normalise_text_gives(raw: str) -> None:
    files = export_files([record("uuid:t1", coop_values("uuid:t1", coop_name=raw))])
    (row,) = table_dicts(files["coop.csv"])
    expected = normalise_text(raw)
    assert row["coop_name"] == expected.value
    report = files["cleaning_report.csv"]
    for step in ("nfc", "whitespace"):
        assert (f"coop.csv,coop_name,{step},1" in report) == (step in expected.steps), report
