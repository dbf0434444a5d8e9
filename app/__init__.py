"""Orchestrator API: the application factory."""

from __future__ import annotations

import os

from flask import Flask

__version__ = "1.0.0"


def create_app(overrides: dict[str, str] | None = None) -> Flask:
    """Build the app from the environment, with `overrides` (variable -> value) on top."""
    from app import auth, cli, errors, metrics, observability, ratelimit, security
    from app.api import approvals, events, service, tasks
    from app.api import auth as auth_api
    from app.config import Settings
    from app.docs import make_api
    from app.extensions import init_redis

    settings = Settings.from_env({**os.environ, **(overrides or {})})
    app = Flask(__name__)
    app.json.sort_keys = False
    observability.init_app(app, settings)
    metrics.init_app(app)
    errors.init_app(app)
    security.init_app(app, settings)
    init_redis(app, settings)
    auth.init_app(app, settings)
    api = make_api(app)
    for blueprint in (
        service.blp,
        service.stats_blp,
        auth_api.blp,
        tasks.blp,
        events.blp,
        approvals.blp,
    ):
        api.register_blueprint(blueprint)
    ratelimit.init_app(app, settings)
    cli.init_app(app)
    return app
