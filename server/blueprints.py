"""The list of blueprints the app serves; each area adds itself here."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Register every blueprint on ``app``."""
    from server.api import accounts, health

    app.register_blueprint(health.bp)
    app.register_blueprint(accounts.bp)
