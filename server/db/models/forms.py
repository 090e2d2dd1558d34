"""Tables of the forms area (filled by its issue)."""

from __future__ import annotations
