"""The list of blueprints the app serves."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Register every blueprint on ``app``."""
    from server.api import (
        accounts,
        console_actions,
        datasets,
        exports,
        forms,
        health,
        indicators,
        openapi,
        refused_submissions,
        submissions,
        sync,
        webhooks,
    )
    from server.console import bp as console_bp
    from server.odata import bp as odata_bp
    from server.openrosa import formlist, submission  # noqa: F401  (their routes attach to the blueprint)
    from server.openrosa.blueprint import bp as openrosa_bp

    app.register_blueprint(health.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(forms.bp)
    app.register_blueprint(submissions.bp)
    app.register_blueprint(refused_submissions.bp)
    app.register_blueprint(sync.bp)
    app.register_blueprint(exports.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(indicators.bp)
    app.register_blueprint(datasets.bp)
    app.register_blueprint(openrosa_bp)
    app.register_blueprint(odata_bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(console_actions.bp)
    app.register_blueprint(console_bp)
