"""Database ids as clients write them: decimal digits within the range of the stores' 64-bit keys.

Every primary key is a signed 64-bit integer (``BigIntPK``); SQLite and psycopg refuse larger Python
ints with ``OverflowError``. Werkzeug's ``int`` converter matches any run of digits, so
``/v1/projects/103661007264632242176`` reached the store and answered 500 (issue 15, row 9). The app's
``int`` converter is :class:`DatabaseIdConverter`: such a URL matches no rule, which is a 404.
"""

from __future__ import annotations

import re
from typing import Any

from werkzeug.routing import IntegerConverter, Map

MAX_DATABASE_ID = 2**63 - 1
_DECIMAL = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also takes "١٢" and "²"


def _digits_up_to(bound: int) -> str:
    """A regex matching the decimal numbers from 0 to ``bound`` (leading zeros allowed, as Werkzeug's)."""
    text = str(bound)
    branches = [rf"\d{{1,{len(text) - 1}}}"] if len(text) > 1 else []
    for i, digit in enumerate(text):
        if digit != "0":
            rest = len(text) - i - 1
            branches.append(f"{text[:i]}[0-{int(digit) - 1}]" + (rf"\d{{{rest}}}" if rest else ""))
    branches.append(text)
    return "(?:" + "|".join(branches) + ")"


class DatabaseIdConverter(IntegerConverter):
    """Werkzeug's ``int`` converter, bounded by the largest id the stores can hold.

    The bound is in the regex, not only in ``to_python``: Werkzeug answers 405 instead of 404 when a
    converter refuses a path that another method's rule also matched (``POST /v1/projects/<huge>/devices``).
    """

    regex = _digits_up_to(MAX_DATABASE_ID)

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_DATABASE_ID)
        super().__init__(map, *args, **kwargs)


def parse_database_id(text: str) -> int | None:
    """The id ``text`` names, or ``None`` when it is not ASCII digits within the stores' range."""
    if not _DECIMAL.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_DATABASE_ID else None
