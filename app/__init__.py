"""Orchestrator API: the application factory."""

from __future__ import annotations

import os

__version__ = "1.0.0"  # before the imports below: some of them read it

from flask import Flask  # noqa: E402

from app import (  # noqa: E402
    api,
    auth,
    cli,
    errors,
    hygiene,
    json_provider,
    metrics,
    observability,
    ratelimit,
    services,
    ui,
)
from app.config import Settings  # noqa: E402


class OrchestratorFlask(Flask):
    """Flask, remembering which of its hooks and views are plain functions."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._synced: dict = {}

    def ensure_sync(self, func):
        """Flask's own answer, looked up: it asks for each of some 14 hooks and views on
        every request, and inspecting a function costs more than the lookup. Bounded, for
        functions made per request (after_this_request)."""
        try:
            synced = self._synced.get(func)
        except TypeError:  # an unhashable callable object
            return super().ensure_sync(func)
        if synced is None:
            synced = super().ensure_sync(func)
            if len(self._synced) < 512:
                self._synced[func] = synced
        return synced


def create_app(overrides: dict[str, str] | None = None) -> Flask:
    """Build the app from the environment, with `overrides` (variable -> value) on top.

    Each step is one module's init_app(app, settings); the order is the app's, and the
    comment on each step says what it must come after.
    """
    settings = Settings.from_env({**os.environ, **(overrides or {})})
    app = OrchestratorFlask(__name__)
    # Before anything answers: every JSON response, errors included, is encoded by it.
    app.json = json_provider.OrjsonProvider(app)
    app.json.sort_keys = False
    app.extensions[services.SETTINGS] = settings
    for init_app in (
        # First: logging, request ids and Sentry see every later step and request.
        observability.init_app,
        # Its after_request is registered early, so it runs late: it counts the final
        # status, including errors and 429s.
        metrics.init_app,
        errors.init_app,
        # Proxy hops, CORS and the body limit act before anything reads the request.
        hygiene.init_app,
        # The Redis client and the domain services; everything below may use them.
        services.init_app,
        auth.init_app,
        # The blueprints, registered through flask-smorest so the spec documents them.
        api.init_app,
        # The pages for people: after auth (they sign in with its API keys and JWT set-up)
        # and before the limiter, so their views get the default limit like the API's.
        ui.init_app,
        # After the blueprints: limits attach to registered blueprints and views, and
        # the limiter shares the services' Redis pool.
        ratelimit.init_app,
        cli.init_app,
    ):
        init_app(app, settings)
    return app
