"""The rate limiter's storage: one Redis round trip per limited request, O(1) per hit.

Stock flask-limiter asks Redis twice per request: once to take a slot and once more,
after the view, for the X-RateLimit-* headers. OneTripRedisStorage, a `limits` storage
registered under its own URI scheme (the library's public extension point), takes the
slot and reads the window in one script and hands that window to the header read. It
runs on the app's own client, so it works on whatever topology REDIS_URL names. The
strategy is limits' sliding-window counter: two counts per limit, kept in one record, so
a hit costs the same whatever the limit (a moving window keeps one entry per request in
the window).
"""

from __future__ import annotations

import logging
import time

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

# KEYS[1] this limit's record, "<window>:<previous window's count>:<this window's count>"
# (the current-window key limits would use; one hash slot: the prefix is the hash tag);
# KEYS[2] (optional) the client address' failed-authentication counter
# (app/auth_failures.py). ARGV: limit, expiry (s), cost, now (ms), failure limit.
# Returns {acquired 0/1, previous count, its ttl, current count, its ttl} (ms), after the
# hit, or {0, 0, 0, -1, 0} when the address is over its failure limit.
# Windows are aligned to multiples of the expiry on the callers' clocks (NTP keeps them
# within milliseconds; a window boundary only decides which count a hit joins), so a hit
# is two commands: one MGET for the record and the failure counter, one SET when taken.
# Guarantees: the slot is taken and the window read in one atomic step, in O(1) time and
# memory whatever the limit; the weighting is limits' own sliding-window counter's.
ACQUIRE_AND_READ = """
local limit, expiry, cost = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000, tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local values = redis.call('MGET', KEYS[1], KEYS[2] or KEYS[1])
if KEYS[2] and tonumber(values[2] or '0') >= tonumber(ARGV[5]) then
  return {0, 0, 0, -1, 0}
end
local window = math.floor(now / expiry)
local elapsed = now - window * expiry
local previous, current = 0, 0
if values[1] then
  local w, p, c = string.match(values[1], '^(%d+):(%d+):(%d+)$')
  if tonumber(w) == window then
    previous, current = tonumber(p), tonumber(c)
  elseif tonumber(w) == window - 1 then
    previous = tonumber(c)
  end
end
local previous_ttl, current_ttl = expiry - elapsed, 2 * expiry - elapsed
local acquired = 0
if cost <= limit and math.floor(previous * previous_ttl / expiry) + current + cost <= limit then
  current, acquired = current + cost, 1
  redis.call('SET', KEYS[1], string.format('%d:%d:%d', window, previous, current),
    'PX', current_ttl)
end
return {acquired, previous, previous_ttl, current, current_ttl}
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

    def _record_key(self, key: str) -> str:
        """This limit's record: the name limits gives a sliding window's current count,
        written here rather than read from its private _current_window_key()."""
        return self.prefixed_key(f"{{{key}}}")

    def initialize_storage(self, uri: str) -> None:
        """Register the library's scripts and ours."""
        super().initialize_storage(uri)
        self.lua_acquire_and_read = self.get_connection().register_script(ACQUIRE_AND_READ)

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """Take `amount` if the weighted count allows; remember the window for this request."""
        current_key = self._record_key(key)
        failures = auth_failures.counter() if has_request_context() else None
        keys, args = [current_key], [limit, expiry, amount, int(time.time() * 1000)]
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
        current_key = self._record_key(key)
        if has_request_context():
            cached = g.get("rate_windows", {}).get(current_key)
            if cached is not None:
                return cached
        # The record as ACQUIRE_AND_READ keeps it (limits' own reader expects two keys).
        expiry_ms, now = expiry * 1000, int(time.time() * 1000)
        window, elapsed = divmod(now, expiry_ms)
        previous = current = 0
        record = self.get_connection().get(current_key)
        if record:
            stored, stored_previous, stored_current = (int(part) for part in record.split(":"))
            if stored == window:
                previous, current = stored_previous, stored_current
            elif stored == window - 1:
                previous = stored_current
        return previous, (expiry_ms - elapsed) / 1000, current, (2 * expiry_ms - elapsed) / 1000
