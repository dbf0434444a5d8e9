"""flask-limiter on the shared Redis, with a moving window that costs one round trip.

Stock flask-limiter asks Redis twice per request: once to take a slot and once more,
after the view, for the X-RateLimit-* headers. The strategy below does both in one
script and remembers the window for the headers, halving the limiter's Redis cost and
sparing a second timeout when Redis stalls mid-request.
"""

from __future__ import annotations

import time

from flask import Flask, g, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter, WindowStats

from app import metrics
from app.auth import is_rate_limit_exempt, rate_limit_key
from app.config import Settings
from app.errors import error_response

# KEYS[1] the window (a list of timestamps, newest first)
# ARGV: now, limit, expiry (s), cost. Returns {acquired 0/1, window start, entries in window}.
# Guarantees: the slot is taken and the window read in one atomic step.
ACQUIRE_AND_READ = """
local now, limit, expiry, cost = tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4])
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


class OneTripMovingWindow(MovingWindowRateLimiter):
    """Moving window whose hit also reads the window, cached for the response headers."""

    def __init__(self, storage: RedisStorage):
        super().__init__(storage)
        self._script = storage.get_connection().register_script(ACQUIRE_AND_READ)

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Take a slot if the window has one; remember the window for the headers."""
        key = self.storage.prefixed_key(item.key_for(*identifiers))
        acquired, start, count = self._script(
            keys=[key], args=[time.time(), item.amount, item.get_expiry(), cost]
        )
        g.setdefault("rate_windows", {})[key] = WindowStats(
            float(start) + item.get_expiry(), item.amount - int(count)
        )
        return bool(acquired)

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """The window read by hit() in this request, else from Redis."""
        key = self.storage.prefixed_key(item.key_for(*identifiers))
        cached = g.get("rate_windows", {}).get(key)
        return cached if cached is not None else super().get_window_stats(item, *identifiers)


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


def _limit(settings: Settings, setting: str) -> str:
    # A fixed string, not a callable: flask-limiter re-parses callable limits on every
    # request, and the limiter (like the settings) belongs to one app.
    return f"{getattr(settings, setting)}/minute"


# Which blueprint each ORCHESTRATOR_RATE_LIMIT_* variable governs.
BLUEPRINT_LIMITS = {
    "tasks": "rate_limit_tasks",
    "events": "rate_limit_events",
    "approvals": "rate_limit_approvals",
    "stats": "rate_limit_stats",
}
EXEMPT_VIEWS = ("service.health",)


def _never_limited() -> bool:
    """/health, CORS preflights (sent by browsers on their own) and static doc assets.

    /health is also exempt by route, but flask-limiter only finds that out after
    resolving every limit; answering here first keeps the health check cheap.
    """
    return (
        request.endpoint in EXEMPT_VIEWS
        or request.method == "OPTIONS"
        or request.blueprint == "docs_assets"
    )


def init_app(app: Flask, settings: Settings) -> Limiter:
    """One limiter per app on the shared Redis pool, keyed by principal or client IP."""
    if settings.uses_memory_redis:
        storage = {"storage_uri": "memory://"}
    else:
        # The URI only picks flask-limiter's Redis storage class (it is handed our pool);
        # `limits` spells a socket path redis+unix://.
        uri = settings.redis_url
        storage = {
            "storage_uri": "redis+" + uri if uri.startswith("unix://") else uri,
            "storage_options": {
                "connection_pool": app.extensions["orchestrator.redis"].connection_pool,
                "key_prefix": f"{settings.queue_prefix}:ratelimit",
            },
        }
    limiter = Limiter(
        key_func=rate_limit_key,
        default_limits=[_limit(settings, "rate_limit_default")],
        headers_enabled=True,
        strategy="moving-window",
        on_breach=_breach_response,
        **storage,
    )
    for blueprint, setting in BLUEPRINT_LIMITS.items():
        limiter.limit(_limit(settings, setting))(app.blueprints[blueprint])
    for endpoint in EXEMPT_VIEWS:
        limiter.exempt(app.view_functions[endpoint])
    limiter.request_filter(_never_limited)
    limiter.request_filter(is_rate_limit_exempt)
    # Registered before the limiter's own after_request, so it runs after it (Flask runs
    # them in reverse): flask-limiter puts Retry-After on every limited response, which
    # on a 200 tells a client to back off for no reason.
    app.after_request(_retry_after_only_when_refused)
    app.register_error_handler(RateLimitExceeded, _refused)
    limiter.init_app(app)
    if not settings.uses_memory_redis:
        limiter._limiter = OneTripMovingWindow(limiter._storage)
    app.extensions["orchestrator.limiter"] = limiter
    return limiter
