"""Orchestrator API: the application factory."""

from __future__ import annotations

import os

from flask import Flask

__version__ = "1.0.0"


def create_app(overrides: dict[str, str] | None = None) -> Flask:
    """Build the app from the environment, with `overrides` (variable -> value) on top."""
    from app import auth, cli, errors, observability, ratelimit, security
    from app.api import approvals, events, service, tasks
    from app.api import auth as auth_api
    from app.config import Settings
    from app.docs import make_api
    from app.extensions import init_redis

    settings = Settings.from_env({**os.environ, **(overrides or {})})
    app = Flask(__name__)
    app.json.sort_keys = False
    observability.init_app(app, settings)
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
    # Registered before the limiter, whose check is the first Redis call of a request.
    app.before_request(_check_path_ids)
    ratelimit.init_app(app, settings)
    cli.init_app(app)
    return app


def _check_path_ids() -> None:
    """SPEC §5: a task or approval id in the path is validated before any Redis call.

    A malformed id is 404 without asking Redis (not even the rate limiter), so garbage
    ids cost nothing and answer 404 while Redis is down. Credentials are checked first so
    an anonymous caller still gets 401, as for a well-formed id.
    """
    from flask import request

    from app.auth import current_principal
    from app.domain.ids import check_approval_id, check_task_id
    from app.errors import NotFound

    if request.method == "OPTIONS":  # a CORS preflight carries no credentials
        return
    args = request.view_args or {}
    for name, check in (("task_id", check_task_id), ("approval_id", check_approval_id)):
        if args.get(name) is None:
            continue
        try:
            check(args[name])
        except NotFound:
            current_principal()  # 401 before 404, as for a well-formed id
            raise
