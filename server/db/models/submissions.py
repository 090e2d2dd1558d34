"""Tables of the submissions area (filled by its issue)."""

from __future__ import annotations
