"""API docs: the generated OpenAPI 3 spec, Swagger UI served from local files, ReDoc.

The spec comes from the views' schemas; the errors every operation shares are added by
one apispec plugin (ErrorResponses) from what the operation is, not listed per view.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from apispec import BasePlugin
from flask import Blueprint, Flask, send_from_directory
from flask_smorest import Api as SmorestApi

from app import __version__
from app.domain.model import DEFAULT_ROUTES
from app.errors import handle_http_exception
from app.rate_budgets import budget_for
from app.ratelimit import UNLIMITED_ENDPOINTS
from app.schemas.common import ErrorSchema, error_doc

SWAGGER_ASSETS = Path(flask_swagger_ui.__file__).with_name("dist")
STATIC = Path(__file__).with_name("static")

assets = Blueprint("docs_assets", __name__)


class Api(SmorestApi):
    """flask-smorest, answering and documenting its errors in our {"detail": ...} shape."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        """Werkzeug and webargs errors as {"detail": ...}."""
        return handle_http_exception(error)


class ErrorResponses(BasePlugin):
    """Documents the errors an operation can meet because of what it is.

    A body can be malformed (400), too large (413), not JSON (415) or invalid (422);
    query parameters can be invalid (422); an id in the path can be unknown (404); every
    rate-limited operation can be limited (429) or meet Redis down (503). 401/403 come from
    require_role; anything else a view declares itself, and its words win.
    """

    ID_PARAMETERS = {
        "{task_id}": "Unknown task",
        "{approval_id}": "Unknown approval",
        "{webhook_id}": "Unknown webhook or delivery",
    }

    @staticmethod
    def limit_description(rule) -> str:
        """Which per-minute budget the operation spends, shared with which others."""
        budget = rule and budget_for(rule.endpoint, rule.methods or set())
        if not budget:
            return "Rate limited: ORCHESTRATOR_RATE_LIMIT_DEFAULT per minute per principal"
        return (
            f"Rate limited: {budget.variable} per minute per principal, one budget "
            f"shared by {budget.covers}"
        )

    def operation_helper(self, path=None, operations=None, **kwargs):
        """Add the shared error responses to each operation of one path."""
        rule = kwargs.get("rule")
        limited = rule is None or rule.endpoint not in UNLIMITED_ENDPOINTS
        for operation in (operations or {}).values():
            shared = {}
            if "requestBody" in operation:
                shared.update({400: "Malformed JSON body", 413: "Request body too large"})
                shared[415] = "Body sent with a Content-Type other than application/json"
                shared[422] = "Invalid request"
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                shared[422] = "Invalid request"
            for name, description in self.ID_PARAMETERS.items():
                if name in (path or ""):
                    shared[404] = description
            if limited:
                shared.update({429: self.limit_description(rule), 503: "Redis unavailable"})
            responses = operation.setdefault("responses", {})
            for code, description in shared.items():
                responses.setdefault(str(code), error_doc(description))
            operation["responses"] = dict(sorted(responses.items(), key=lambda kv: str(kv[0])))


class OperationIds(BasePlugin):
    """A stable operationId for every operation: `<blueprint>_<view function>`.

    Derived from names the code already keeps stable (they are also the metrics' and
    the limiter's endpoint names), so client generators keep their method names.
    """

    def operation_helper(self, path=None, operations=None, **kwargs):
        """Set operationId from the Flask endpoint."""
        rule = kwargs.get("rule")
        if rule is None:
            return
        for operation in (operations or {}).values():
            operation.setdefault("operationId", rule.endpoint.replace(".", "_"))


def routing_table(routes) -> str:
    """The type -> agent routing table, as Markdown (README and the spec show it)."""
    agents: dict[str, list[str]] = {}
    for task_type, agent in routes.items():
        agents.setdefault(agent, []).append(f"`{task_type}`")
    rows = [f"| {', '.join(types)} | `{agent}` |" for agent, types in sorted(agents.items())]
    return "\n".join(["| task type | agent |", "|---|---|", *rows])


@assets.route("/docs/assets/<path:filename>")
def swagger_asset(filename: str):
    """Swagger UI's own files, shipped by flask-swagger-ui: the docs work offline."""
    return send_from_directory(SWAGGER_ASSETS, filename, max_age=86400)


@assets.route("/docs/static/<path:filename>")
def static_asset(filename: str):
    """Other vendored doc assets (ReDoc's bundle)."""
    return send_from_directory(STATIC, filename, max_age=86400)


# flask-smorest's settings: the spec at /openapi.json, Swagger UI at /docs (its files from
# /docs/assets/, see swagger_asset), ReDoc at /redoc (its bundle: redoc_bundle_url()).
DOCS_SETTINGS = {
    "API_TITLE": "Orchestrator API",
    "API_VERSION": __version__,
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
    # validatorUrl None: no badge fetched from validator.swagger.io (works offline).
    "OPENAPI_SWAGGER_UI_CONFIG": {
        "persistAuthorization": False,
        "tryItOutEnabled": True,
        "validatorUrl": None,
    },
    "OPENAPI_REDOC_PATH": "redoc",
}
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "ORCHESTRATOR_METRICS_TOKEN, when it is set",
    },
}


def redoc_bundle_url() -> str:
    """Where /redoc loads ReDoc from: the vendored bundle, else the CDN."""
    # ReDoc 2.5.4's bundle is vendored in app/static (MIT, see redoc.LICENSE) so /redoc
    # works offline too; the CDN is only a fallback for a checkout without it.
    if (STATIC / "redoc.standalone.js").exists():
        return "/docs/static/redoc.standalone.js"
    return "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"


def make_api(app: Flask, routes=DEFAULT_ROUTES) -> Api:
    """flask-smorest bound to this app, with the auth schemes and shared errors declared."""
    app.config.update(DOCS_SETTINGS, OPENAPI_REDOC_URL=redoc_bundle_url())
    api = Api(
        app,
        spec_kwargs={
            "extra_plugins": [ErrorResponses(), OperationIds()],
            "info": {
                "description": "Hand out work to AI agents, watch it and stop it. "
                "Critical tasks wait for a human approval.\n\n"
                "A task's `type` picks the agent whose queue it joins "
                "(`ORCHESTRATOR_ROUTING_RULES` overrides entries):\n\n" + routing_table(routes)
            },
        },
    )
    for name, scheme in SECURITY_SCHEMES.items():
        # A copy each: apispec keeps the dict it is given, and tests build many apps.
        api.spec.components.security_scheme(name, dict(scheme))
    app.register_blueprint(assets)
    return api
