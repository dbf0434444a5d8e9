"""Rate limits: flask-limiter on the shared Redis, keyed by principal or client address.

Which requests count, under which key, and which never do is decided here. Stock
flask-limiter asks Redis twice per request: once to take a slot and once more, after
the view, for the X-RateLimit-* headers. OneTripRedisStorage, a `limits` storage
registered under its own URI scheme (the library's public extension point), takes the
slot and reads the window in one script and hands that window to the header read. It
runs on the app's own client, so it works on whatever topology REDIS_URL names. The
strategy is limits' sliding-window counter: two counters per limit, so a hit costs the
same whatever the limit (a moving window keeps one entry per request in the window).
"""

from __future__ import annotations

import ipaddress
import time

from flask import Flask, g, has_request_context, request
from flask_limiter import Limiter, RateLimitExceeded
from limits.storage import RedisStorage, Storage

from app import metrics
from app.auth import authenticate, session_subject
from app.config import Settings
from app.domain.keys import Keys
from app.errors import Unauthorized, error_response
from app.services import current_settings, redis_client

# KEYS[1] the previous window's counter, KEYS[2] the current one (one hash slot: limits
# wraps the key in braces). ARGV: limit, expiry (s), cost. Times are Redis's own, in ms.
# Returns {acquired 0/1, previous count, its ttl, current count, its ttl}, after the hit.
# Guarantees: the slot is taken and the window read in one atomic step, in O(1) time and
# memory whatever the limit; the same arithmetic as limits' own acquire script.
ACQUIRE_AND_READ = """
local limit, expiry, cost = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000, tonumber(ARGV[3])
local current_ttl = redis.call('PTTL', KEYS[2])
local current = tonumber(redis.call('GET', KEYS[2])) or 0
local previous, previous_ttl
if current_ttl > 0 and current_ttl < expiry then
  -- The current window has ended: it becomes the previous one, with the TTL it had.
  redis.call('RENAME', KEYS[2], KEYS[1])
  previous, previous_ttl = current, current_ttl
  current, current_ttl = 0, current_ttl + expiry
  redis.call('SET', KEYS[2], 0, 'PX', current_ttl)
else
  previous = tonumber(redis.call('GET', KEYS[1])) or 0
  previous_ttl = math.max(0, redis.call('PTTL', KEYS[1]))
end
local acquired = 0
if cost <= limit and math.floor(previous * previous_ttl / expiry) + current + cost <= limit then
  if current_ttl > 0 then
    redis.call('INCRBY', KEYS[2], cost)
  else
    current_ttl = expiry * 2
    redis.call('SET', KEYS[2], cost, 'PX', current_ttl)
  end
  current, acquired = current + cost, 1
end
return {acquired, previous, previous_ttl, current, math.max(0, current_ttl)}
"""
STORAGE_SCHEME = "orchestrator+redis"


class OneTripRedisStorage(RedisStorage):
    """A sliding-window-counter storage whose acquire also reads the window, for the headers."""

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

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """Take `amount` if the weighted count allows; remember the window for this request."""
        previous_key = self.prefixed_key(self._previous_window_key(key))
        current_key = self.prefixed_key(self._current_window_key(key))
        acquired, previous, previous_ttl, current, current_ttl = self.lua_acquire_and_read(
            [previous_key, current_key], [limit, expiry, amount]
        )
        if has_request_context():
            window = (int(previous), previous_ttl / 1000, int(current), current_ttl / 1000)
            g.setdefault("rate_windows", {})[current_key] = window
        return bool(acquired)

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        """The window acquire_sliding_window_entry read in this request, else from Redis."""
        if has_request_context():
            current_key = self.prefixed_key(self._current_window_key(key))
            cached = g.get("rate_windows", {}).get(current_key)
            if cached is not None:
                return cached
        return super().get_sliding_window(key, expiry)


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


# Which blueprint each ORCHESTRATOR_RATE_LIMIT_* variable governs; everything else has
# the default limit.
BLUEPRINT_LIMITS = {
    "tasks": "rate_limit_tasks",
    "events": "rate_limit_events",
    "approvals": "rate_limit_approvals",
    "stats": "rate_limit_stats",
}
UNLIMITED_ENDPOINTS = ("service.health",)


def never_limited() -> bool:
    """/health, CORS preflights (sent by browsers on their own) and static assets.

    /health is also exempt by route, but flask-limiter only finds that out after
    resolving every limit; answering here first keeps the health check cheap.
    """
    return (
        request.endpoint in UNLIMITED_ENDPOINTS
        or request.method == "OPTIONS"
        or request.blueprint == "docs_assets"
        or request.endpoint == "ui.static"
    )


def _per_minute(settings: Settings, setting: str) -> str:
    # A fixed string, not a callable: flask-limiter re-parses callable limits on every
    # request, and the limiter (like the settings) belongs to one app.
    return f"{getattr(settings, setting)}/minute"


def _breach_response(limit):
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
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
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
    for blueprint, setting in BLUEPRINT_LIMITS.items():
        limiter.limit(_per_minute(settings, setting))(app.blueprints[blueprint])
    for endpoint in UNLIMITED_ENDPOINTS:
        limiter.exempt(app.view_functions[endpoint])
    limiter.request_filter(never_limited)
    limiter.request_filter(is_exempt)
    # Registered before the limiter's own after_request, so it runs after it (Flask runs
    # them in reverse): flask-limiter puts Retry-After on every limited response, which
    # on a 200 tells a client to back off for no reason.
    app.after_request(_retry_after_only_when_refused)
    app.register_error_handler(RateLimitExceeded, _refused)
    limiter.init_app(app)
