"""JSON API for the exports area (filled by its issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("exports", __name__, url_prefix="/v1")
