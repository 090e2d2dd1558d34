"""The role matrix: every endpoint × every persona → the expected status.

Each area adds a module ``tests/server/role_matrix_<area>.py`` defining ``CASES``: a list of
``Case``. ``test_role_matrix.py`` runs them all and checks every URL rule of the app has a case.
Statuses are those of a well-formed request; ``{pid}`` is the personas' project, ``{other}`` a
project the non-admin personas are not in, ``{token}`` the device token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PERSONAS = ("anonymous", "admin", "manager", "coach", "analyst", "outsider", "device")


@dataclass(frozen=True)
class Case:
    """One endpoint and the status each persona must get."""

    method: str
    path: str
    rule: str  # the Flask URL rule this exercises (for the coverage check)
    expected: dict[str, int]
    json: dict[str, Any] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    setup: str | None = None  # name of a fixture-like function in the area module preparing state


def statuses(ok: int, *, allowed: tuple[str, ...], anonymous: int = 401, denied: int = 403) -> dict[str, int]:
    """Build an expectation: ``ok`` for the allowed personas, ``denied`` for the others."""
    result = {"anonymous": anonymous}
    for persona in PERSONAS[1:]:
        result[persona] = ok if persona in allowed else denied
    return result
