"""API docs: the generated OpenAPI 3 spec, Swagger UI served from local files, ReDoc."""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Flask, send_from_directory

from app import __version__
from app.extensions import Api

SWAGGER_ASSETS = Path(flask_swagger_ui.__file__).with_name("dist")
STATIC = Path(__file__).with_name("static")

assets = Blueprint("docs_assets", __name__)


@assets.route("/docs/assets/<path:filename>")
def swagger_asset(filename: str):
    """Swagger UI's own files, shipped by flask-swagger-ui: the docs work offline."""
    return send_from_directory(SWAGGER_ASSETS, filename, max_age=86400)


@assets.route("/docs/static/<path:filename>")
def static_asset(filename: str):
    """Other vendored doc assets (ReDoc's bundle)."""
    return send_from_directory(STATIC, filename, max_age=86400)


def make_api(app: Flask) -> Api:
    """flask-smorest bound to this app, with both auth schemes declared."""
    # ReDoc 2.5.4's bundle is vendored in app/static (MIT, see redoc.LICENSE) so /redoc
    # works offline too; the CDN is only a fallback for a checkout without it.
    redoc_local = (STATIC / "redoc.standalone.js").exists()
    redoc_url = (
        "/docs/static/redoc.standalone.js"
        if redoc_local
        else "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"
    )
    app.config.update(
        API_TITLE="Orchestrator API",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        # validatorUrl None: no badge fetched from validator.swagger.io (works offline).
        OPENAPI_SWAGGER_UI_CONFIG={
            "persistAuthorization": False,
            "tryItOutEnabled": True,
            "validatorUrl": None,
        },
        OPENAPI_REDOC_PATH="redoc",
        OPENAPI_REDOC_URL=redoc_url,
    )
    api = Api(
        app,
        spec_kwargs={
            "info": {
                "description": "Hand out work to AI agents, watch it and stop it. "
                "Critical tasks wait for a human approval."
            },
        },
    )
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    api.spec.components.security_scheme(
        "apiKeyAuth", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )
    api.spec.components.security_scheme(
        "metricsToken",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "ORCHESTRATOR_METRICS_TOKEN, when it is set",
        },
    )
    app.register_blueprint(assets)
    return api
