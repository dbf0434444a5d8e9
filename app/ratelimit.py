"""Rate limits: flask-limiter on the shared Redis, keyed by principal or client address.

Which requests count, under which key, and which never do is decided here. Stock
flask-limiter asks Redis twice per request: once to take a slot and once more, after
the view, for the X-RateLimit-* headers. OneTripRedisStorage, a `limits` storage
registered under its own URI scheme (the library's public extension point), takes the
slot and reads the window in one script and hands that window to the header read. It
runs on the app's own client, so it works on whatever topology REDIS_URL names.
"""

from __future__ import annotations

import ipaddress
import logging
import time

import redis
from flask import Flask, current_app, g, has_request_context, request
from flask_limiter import Limiter, RateLimitExceeded
from limits.storage import RedisStorage, Storage

from app import auth_failures, metrics
from app.auth import authenticate, session_subject
from app.config import Settings
from app.domain.keys import Keys
from app.errors import Unauthorized, error_response
from app.rate_budgets import attach_budgets
from app.redis_client import REDIS_LOCATION
from app.services import current_settings, redis_breaker, redis_client

log = logging.getLogger("orchestrator.ratelimit")

# KEYS[1] the window (a list of timestamps, newest first); KEYS[2] (optional) the client
# address' failed-authentication counter (app/auth_failures.py).
# ARGV: now, limit, expiry (s), cost, failure limit. Returns {acquired 0/1, window start,
# entries in window}, or {0, now, -1} when the address is over its failure limit.
# Guarantees: the slot is taken and the window read in one atomic step.
ACQUIRE_AND_READ = """
local now, limit, expiry, cost = tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4])
if KEYS[2] and tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[5]) then
  return {0, tostring(now), -1}
end
local acquired = 0
local entry = redis.call('LINDEX', KEYS[1], limit - cost)
if cost <= limit and not (entry and tonumber(entry) >= now - expiry) then
  for _ = 1, cost do redis.call('LPUSH', KEYS[1], now) end
  redis.call('LTRIM', KEYS[1], 0, limit - 1)
  redis.call('EXPIRE', KEYS[1], expiry)
  acquired = 1
end
local low, high, oldest = 0, redis.call('LLEN', KEYS[1]) - 1, nil
while low <= high do
  local mid = math.floor((low + high) / 2)
  local value = tonumber(redis.call('LINDEX', KEYS[1], mid))
  if value and value >= now - expiry then oldest = mid; low = mid + 1 else high = mid - 1 end
end
if oldest == nil then return {acquired, tostring(now), 0} end
return {acquired, redis.call('LINDEX', KEYS[1], oldest), oldest + 1}
"""
STORAGE_SCHEME = "orchestrator+redis"


class OneTripRedisStorage(RedisStorage):
    """A moving-window storage whose acquire also reads the window, for the headers."""

    STORAGE_SCHEME = [STORAGE_SCHEME]

    def __init__(self, uri: str, client, key_prefix: str, wrap_exceptions: bool = False):
        """Use `client`, the app's (single node, sentinel or cluster), instead of a URL."""
        # RedisStorage.__init__ would build a client from the URI; the app's factory has
        # already built the right one, so only the base Storage set-up runs here.
        Storage.__init__(self, uri, wrap_exceptions=wrap_exceptions)
        self.key_prefix = key_prefix
        self.target_server = "redis"
        self.dependency = self.dependencies["redis"].module
        self.storage = client
        self.initialize_storage(uri)

    def initialize_storage(self, uri: str) -> None:
        """Register the library's scripts and ours."""
        super().initialize_storage(uri)
        self.lua_acquire_and_read = self.get_connection().register_script(ACQUIRE_AND_READ)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Take `amount` slots if the window has them; remember the window for this request."""
        key = self.prefixed_key(key)
        failures = auth_failures.counter() if has_request_context() else None
        keys, args = [key], [time.time(), limit, expiry, amount]
        if failures:
            keys.append(failures[0])
            args.append(failures[1])
        try:
            acquired, start, count = self.lua_acquire_and_read(keys, args)
        except redis.OutOfMemoryError:
            # A full Redis cannot record the slot. Refusing every request would also stop
            # the reads and claims that drain it, so the request goes on uncounted.
            return True
        except redis.RedisError as error:
            if not (has_request_context() and request.endpoint in REDIS_FREE_ENDPOINTS):
                raise
            # The docs, /metrics, / and /auth/token do not need Redis: a Redis outage
            # must not become theirs, so they answer unlimited while it lasts.
            redis_breaker().trip()
            log.warning(
                "rate limiter: redis at %s unavailable (%s); %s answered without a limit",
                current_app.extensions.get(REDIS_LOCATION, "?"),
                type(error).__name__,
                request.path,
            )
            acquired, start, count = 1, time.time(), 0
        if int(count) < 0:
            g.auth_failures_blocked = True  # read by _breach_response
            return False
        if has_request_context():
            g.setdefault("rate_windows", {})[key] = (float(start), int(count))
        return bool(acquired)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """The window acquire_entry read in this request, else from Redis."""
        cached = (
            g.get("rate_windows", {}).get(self.prefixed_key(key)) if has_request_context() else None
        )
        return cached if cached is not None else super().get_moving_window(key, limit, expiry)


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
# Endpoints that answer without Redis: limited while Redis answers, never refused
# because it does not (see OneTripRedisStorage.acquire_entry and never_limited).
REDIS_FREE_ENDPOINTS = frozenset(
    {
        "service.root",
        "service.prometheus_metrics",
        "auth.token",
        "api-docs.openapi_json",
        "api-docs.openapi_swagger_ui",
        "api-docs.openapi_redoc",
    }
)


def never_limited() -> bool:
    """/health, CORS preflights, static assets, and Redis-free endpoints while Redis is down.

    /health is also exempt by route, but flask-limiter only finds that out after
    resolving every limit; answering here first keeps the health check cheap.
    """
    return (
        request.endpoint in UNLIMITED_ENDPOINTS
        or request.method == "OPTIONS"
        or request.blueprint == "docs_assets"
        or request.endpoint == "ui.static"
        or (request.endpoint in REDIS_FREE_ENDPOINTS and redis_breaker().is_open())
    )


def _count_auth_failures():
    if never_limited():
        return None
    return auth_failures.check_and_count()


def _per_minute(settings: Settings, setting: str) -> str:
    # A fixed string, not a callable: flask-limiter re-parses callable limits on every
    # request, and the limiter (like the settings) belongs to one app.
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


def _retry_after_only_when_refused(response):
    if g.get("auth_failures_blocked"):
        # Exactly the answer a bad credential gets from auth_failures: nothing to compare.
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
        strategy="moving-window",
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
    # Registered before the limiter's own after_request, so it runs after it (Flask runs
    # them in reverse): flask-limiter puts Retry-After on every limited response, which
    # on a 200 tells a client to back off for no reason.
    app.after_request(_retry_after_only_when_refused)
    app.register_error_handler(RateLimitExceeded, _refused)
    limiter.init_app(app)
