"""Tables of the sync area (filled by its issue)."""

from __future__ import annotations
