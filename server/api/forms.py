"""JSON API for the forms area (filled by its issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("forms", __name__, url_prefix="/v1")
