"""OpenRosa formlist routes (filled by its issue)."""

from __future__ import annotations

from server.openrosa.blueprint import bp

__all__ = ["bp"]
