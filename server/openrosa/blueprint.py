"""The ``openrosa`` blueprint; its routes live in the modules of this package (errors render as OpenRosa XML)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("openrosa", __name__)
