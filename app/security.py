"""Request hygiene: trusted proxy hops, CORS, body size, and safe response headers."""

from __future__ import annotations

import re

from flask import Flask, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings
from app.errors import error_response

ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-API-Key", "Idempotency-Key",
                   "X-Request-ID"]
EXPOSED_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                   "Retry-After", "X-Request-ID", "Location", "Idempotent-Replayed"]


def origin_pattern(origin: str) -> re.Pattern:
    """An exact origin, or `scheme://*.domain` matching exactly one extra leftmost label."""
    if origin == "*":
        return re.compile(r"^.+$")
    scheme, _, host = origin.partition("://")
    if host.startswith("*."):
        return re.compile(rf"^{re.escape(scheme)}://[A-Za-z0-9-]+\.{re.escape(host[2:])}$",
                          re.IGNORECASE)
    return re.compile(rf"^{re.escape(origin)}$", re.IGNORECASE)


def init_app(app: Flask, settings: Settings) -> None:
    """Install ProxyFix, CORS, the body limit and default response headers."""
    # Only the configured number of proxy hops may set the client address: a spoofed
    # X-Forwarded-For beyond them changes nothing (rate limits key on this address).
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,
                                x_proto=settings.trusted_proxies,
                                x_host=0, x_port=0, x_prefix=0)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    CORS(app, origins=[origin_pattern(o) for o in settings.cors_origins] or [],
         supports_credentials=True, allow_headers=ALLOWED_HEADERS,
         expose_headers=EXPOSED_HEADERS, max_age=600)

    @app.before_request
    def refuse_large_bodies():
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            return error_response(
                413, f"Request body is larger than {settings.max_body_bytes} bytes")
        return None

    @app.after_request
    def safe_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not request.path.startswith("/docs/assets/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
