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


class DatabaseIdConverter(IntegerConverter):
    """Werkzeug's ``int`` converter, bounded by the largest id the stores can hold."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_DATABASE_ID)
        super().__init__(map, *args, **kwargs)


def parse_database_id(text: str) -> int | None:
    """The id ``text`` names, or ``None`` when it is not ASCII digits within the stores' range."""
    if not _DECIMAL.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_DATABASE_ID else None
