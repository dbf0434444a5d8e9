"""Request hygiene: trusted proxy hops, CORS, body size, and safe response headers.

What every request gets before any view or the limiter sees it, and every response
after; nothing here knows who is calling (app/auth.py) or counts requests (app/ratelimit.py).
"""

from __future__ import annotations

import io
import re

from flask import Flask, request
from flask_cors import CORS
from gunicorn.http.errors import ParseException
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings
from app.errors import BadRequest, error_response

ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "X-API-Key",
    "Idempotency-Key",
    "X-Request-ID",
    "X-Lease-Token",
]
EXPOSED_HEADERS = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "X-Request-ID",
    "Location",
    "Idempotent-Replayed",
]


def origin_pattern(origin: str) -> re.Pattern:
    """An exact origin, or `scheme://*.domain` matching exactly one extra leftmost label."""
    # \Z, not $: $ also matches before a trailing newline.
    scheme, _, host = origin.partition("://")
    if host.startswith("*."):
        return re.compile(
            rf"^{re.escape(scheme)}://[A-Za-z0-9-]+\.{re.escape(host[2:])}\Z", re.IGNORECASE
        )
    return re.compile(rf"^{re.escape(origin)}\Z", re.IGNORECASE)


def _buffer_unsized_body(limit: int) -> bool:
    """Read a chunked body (no Content-Length) up to `limit`; False when it is longer.

    werkzeug's MAX_CONTENT_LENGTH cuts such a stream at the limit without an error, so
    the view would parse a truncated body (a 400, or worse, a valid JSON prefix). Read
    one byte past the limit ourselves, then hand the view the buffered body.
    """
    environ = request.environ
    if not environ.get("wsgi.input_terminated"):
        return True  # the server does not promise an end: werkzeug reads no body at all
    stream, chunks, size = environ["wsgi.input"], [], 0
    try:
        while size <= limit:
            chunk = stream.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except ParseException as error:  # a bad chunk size or terminator, found mid-body
        raise BadRequest(f"Malformed chunked body: {type(error).__name__}") from None
    if size > limit:
        return False
    environ["wsgi.input"] = io.BytesIO(b"".join(chunks))
    environ["CONTENT_LENGTH"] = str(size)
    return True


def init_app(app: Flask, settings: Settings) -> None:
    """Install ProxyFix, CORS, the body limit and default response headers."""
    # Only the configured number of proxy hops may set the client address: a spoofed
    # X-Forwarded-For beyond them changes nothing (rate limits key on this address).
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(
            app.wsgi_app,
            x_for=settings.trusted_proxies,
            x_proto=settings.trusted_proxies,
            x_host=0,
            x_port=0,
            x_prefix=0,
        )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # `*` (refused in production) opens the API to every origin, so it answers a plain
    # `*` without credentials; listed origins are echoed back, with credentials. With no
    # origin listed (the default) flask-cors would add nothing to any answer, yet its
    # after_request would still run on every request: it is not installed.
    public = "*" in settings.cors_origins
    if settings.cors_origins:
        CORS(
            app,
            origins="*" if public else [origin_pattern(o) for o in settings.cors_origins],
            supports_credentials=not public,
            send_wildcard=public,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )

    @app.before_request
    def refuse_large_bodies():
        limit = settings.max_body_bytes
        length = request.content_length
        too_large = length > limit if length is not None else not _buffer_unsized_body(limit)
        if too_large:
            return error_response(413, f"Request body is larger than {limit} bytes")
        return None

    @app.after_request
    def safe_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not request.path.startswith("/docs/assets/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
