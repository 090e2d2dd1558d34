"""Tables of the exports area (filled by its issue)."""

from __future__ import annotations
