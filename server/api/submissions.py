"""JSON API for the submissions area (filled by its issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("submissions", __name__, url_prefix="/v1")
