"""JSON API for the sync area (filled by its issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("sync", __name__, url_prefix="/v1")
