"""The rate limiter's storage: one Redis round trip per limited request, O(1) per hit.

Stock flask-limiter asks Redis twice per request: once to take a slot and once more,
after the view, for the X-RateLimit-* headers. OneTripRedisStorage, a `limits` storage
registered under its own URI scheme (the library's public extension point), takes the
slot and reads the window in one script and hands that window to the header read. It
runs on the app's own client, so it works on whatever topology REDIS_URL names. The
strategy is limits' sliding-window counter: two counters per limit, so a hit costs the
same whatever the limit (a moving window keeps one entry per request in the window).
"""

from __future__ import annotations

import logging

import redis
from flask import current_app, g, has_request_context, request
from limits.storage import RedisStorage, Storage

from app import auth_failures
from app.redis_client import REDIS_LOCATION
from app.services import redis_breaker

log = logging.getLogger("orchestrator.ratelimit")

# Endpoints that answer without Redis: limited while Redis answers, never refused
# because it does not (see OneTripRedisStorage and ratelimit.never_limited).
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

# KEYS[1] the previous window's counter, KEYS[2] the current one (one hash slot: limits
# wraps the key in braces); KEYS[3] (optional) the client address' failed-authentication
# counter (app/auth_failures.py). ARGV: limit, expiry (s), cost, failure limit. Times are
# Redis's own, in ms. Returns {acquired 0/1, previous count, its ttl, current count, its
# ttl}, after the hit, or {0, 0, 0, -1, 0} when the address is over its failure limit.
# Guarantees: the slot is taken and the window read in one atomic step, in O(1) time and
# memory whatever the limit; the same arithmetic as limits' own acquire script.
ACQUIRE_AND_READ = """
local limit, expiry, cost = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000, tonumber(ARGV[3])
if KEYS[3] and tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[4]) then
  return {0, 0, 0, -1, 0}
end
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
        failures = auth_failures.counter() if has_request_context() else None
        keys, args = [previous_key, current_key], [limit, expiry, amount]
        if failures:
            keys.append(failures[0])
            args.append(failures[1])
        try:
            acquired, previous, previous_ttl, current, current_ttl = self.lua_acquire_and_read(
                keys, args
            )
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
            acquired, previous, previous_ttl, current, current_ttl = 1, 0, 0, 0, 0
        if int(current) < 0:
            g.auth_failures_blocked = True  # read by _breach_response
            return False
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
