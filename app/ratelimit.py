"""Rate limits: flask-limiter on the shared Redis, keyed by principal or client address.

Which requests count, under which key, and which never do is decided here; the storage
that counts them in one round trip is app/rate_storage.py.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from functools import partial

import redis
from flask import Flask, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded

from app import auth_failures, metrics, rate_rider
from app.auth import authenticate, session_subject
from app.config import Settings
from app.domain.keys import Keys
from app.errors import Unauthorized, error_response
from app.rate_budgets import attach_budgets
from app.rate_rider import RideRefused
from app.rate_storage import REDIS_FREE_ENDPOINTS, STORAGE_SCHEME
from app.services import current_settings, redis_breaker, redis_client

log = logging.getLogger("orchestrator.ratelimit")


def client_ip() -> str:
    """The client address after ProxyFix has applied the trusted hops."""
    return request.remote_addr or "unknown"


def rate_limit_key() -> str:
    """Limit per principal, or per client IP when anonymous or credentials are bad.

    A person signed in to /ui counts under the same principal key as their API calls, so
    a team behind one address does not share one budget.
    """
    try:
        principal = authenticate()
    except Unauthorized:
        principal = None
    if principal:
        return f"principal:{principal.id}"
    subject = session_subject() if request.blueprint == "ui" else None
    return f"principal:{subject}" if subject else f"ip:{client_ip()}"


def is_exempt() -> bool:
    """ORCHESTRATOR_RATE_LIMIT_EXEMPT: trusted principals and networks are never limited."""
    settings = current_settings()
    if settings.rate_limit_exempt_principals:
        try:
            principal = authenticate()
        except Unauthorized:
            principal = None
        if principal and principal.id in settings.rate_limit_exempt_principals:
            return True
    if settings.rate_limit_exempt_networks:
        try:
            address = ipaddress.ip_address(client_ip())
        except ValueError:
            return False
        return any(address in network for network in settings.rate_limit_exempt_networks)
    return False


UNLIMITED_ENDPOINTS = ("service.health",)


def never_limited() -> bool:
    """/health, CORS preflights, static assets, and Redis-free endpoints while Redis is down.

    /health is also exempt by route, but flask-limiter only finds that out after
    resolving every limit; answering here first keeps the health check cheap.
    """
    endpoint = request.endpoint  # read once: each read goes through Flask's context
    return (
        endpoint in UNLIMITED_ENDPOINTS
        or request.method == "OPTIONS"
        # request.blueprint, from the endpoint already read
        or (endpoint is not None and endpoint.rpartition(".")[0] == "docs_assets")
        or endpoint == "ui.static"
        or (endpoint in REDIS_FREE_ENDPOINTS and redis_breaker().is_open())
    )


def _answer_unlimited_endpoints():
    """GET /health, answered before flask-limiter's before_request: nothing to count.

    flask-limiter resolves the exemption scopes of an exempt request all the same, about
    a sixth of a health check; returning the view's answer from an earlier hook skips
    that, and Flask handles it as the view's (after_request hooks included).
    """
    if request.endpoint in UNLIMITED_ENDPOINTS and request.method in ("GET", "HEAD"):
        view = current_app.view_functions[request.endpoint]
        return current_app.ensure_sync(view)(**request.view_args)
    return None


def _count_auth_failures():
    if never_limited():
        return None
    return auth_failures.check_and_count()


def _per_minute(settings: Settings, setting: str) -> str:
    # A fixed string: the default limit does not depend on the request, and the limiter
    # (like the settings) belongs to one app.
    return f"{getattr(settings, setting)}/minute"


def _breach_response(limit):
    if g.get("auth_failures_blocked"):
        return auth_failures.refused()
    reset = max(1, int(limit.reset_at - time.time()))
    return error_response(
        429,
        f"Rate limit exceeded: {limit.limit.amount} per {limit.limit.get_expiry()} s",
        headers={"Retry-After": str(reset)},
    )


def _refused(error: RateLimitExceeded):
    """The 429 _breach_response shaped, which flask-limiter carries inside the exception.

    The generic HTTP error handler would rebuild it from the description alone.
    """
    metrics.rate_limited(request.blueprint)
    if error.response is not None:
        return error.response
    return error_response(429, f"Rate limit exceeded: {error.description}")


def _refused_after_all(limiter: Limiter):
    """The 429 for a hit refused after flask-limiter let the request in (rate_rider.py):
    the same answer as _refused gives, for the limit the request spent."""
    metrics.rate_limited(request.blueprint)
    return _breach_response(limiter.current_limit)


def _take_unused_hit(limiter: Limiter, response):
    """A riding hit that no script call carried is taken now; refused, the view's answer
    (which changed nothing: it never reached Redis) becomes the 429."""
    hit = rate_rider.unused_hit()
    if hit is None:
        return response
    try:
        taken = limiter.storage.take(hit)
    except redis.RedisError:
        return response  # Redis is away: uncounted, as the view's own answer says if it must
    return response if taken else _refused_after_all(limiter)


def _retry_after_only_when_refused(response):
    if g.get("auth_failures_blocked") or (response.status_code == 503 and rate_rider.hit_lost()):
        # Exactly the answer a bad credential gets from auth_failures: nothing to compare;
        # or a hit that never reached Redis: no window to show.
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
            response.headers.pop(name, None)
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
        # A view's own Retry-After (claim's 204: when to poll again) is put back.
        if g.get("retry_after") is not None:
            response.headers["Retry-After"] = str(g.retry_after)
    elif response.headers.get("Retry-After") == "0":
        # flask-limiter truncates the time to the window's reset; "0" invites a retry storm.
        response.headers["Retry-After"] = "1"
    return response


def _storage(app: Flask, settings: Settings) -> dict:
    if settings.uses_memory_redis:
        return {"storage_uri": "memory://"}
    # Our scheme picks OneTripRedisStorage; it is handed the app's own client.
    return {
        "storage_uri": f"{STORAGE_SCHEME}://",
        "storage_options": {
            "client": redis_client(app),
            "key_prefix": Keys(settings.queue_prefix).name("rate_limits"),
        },
    }


def init_app(app: Flask, settings: Settings) -> None:
    """One limiter per app on the shared Redis pool; needs the blueprints registered."""
    limiter = Limiter(
        key_func=rate_limit_key,
        default_limits=[_per_minute(settings, "rate_limit_default")],
        headers_enabled=True,
        strategy="sliding-window-counter",
        on_breach=_breach_response,
        **_storage(app, settings),
    )
    attach_budgets(app, limiter, settings)
    for endpoint in UNLIMITED_ENDPOINTS:
        limiter.exempt(app.view_functions[endpoint])
    limiter.request_filter(never_limited)
    limiter.request_filter(is_exempt)
    # Before the limiter's own before_request (Flask runs them in registration order):
    # failed authentications are counted before any other check.
    auth_failures.init_app(app, settings)
    app.before_request(_count_auth_failures)
    app.before_request(_answer_unlimited_endpoints)
    # Registered before the limiter's own after_request, so it runs after it (Flask runs
    # them in reverse): flask-limiter puts Retry-After on every limited response, which
    # on a 200 tells a client to back off for no reason.
    app.after_request(_retry_after_only_when_refused)
    app.register_error_handler(RateLimitExceeded, _refused)
    app.register_error_handler(RideRefused, lambda _error: _refused_after_all(limiter))
    limiter.init_app(app)
    # After the limiter's own after_request, so it runs before it: a hit left for a
    # script the view never called is taken before the X-RateLimit-* headers are read.
    app.after_request(partial(_take_unused_hit, limiter))
