"""Thin blueprints: parse the request, call the domain, shape the answer.

A view declares its schemas (flask-smorest) and its role (app.auth.require_role, which
also documents 401/403); errors every operation shares are documented by app.docs.
"""

from __future__ import annotations

from flask import Flask

from app.config import Settings


def merged(query: dict, body: dict | None) -> dict:
    """Values a view accepts in the query string or the JSON body; the body wins."""
    return {**query, **(body or {})}


def init_app(app: Flask, settings: Settings) -> None:
    """Register every blueprint on the app and in its OpenAPI spec."""
    from app.api import agents, approvals, decisions, events, service, tasks, tokens, webhooks
    from app.docs import make_api

    api = make_api(app, settings.routes)
    for blueprint in (
        service.blp,
        service.stats_blp,
        tokens.blp,
        tasks.blp,
        events.blp,
        approvals.blp,
        webhooks.blp,
        agents.blp,
    ):
        api.register_blueprint(blueprint)
    # Pages for people, not API operations: outside the OpenAPI spec.
    app.register_blueprint(decisions.blp)
