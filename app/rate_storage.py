"""The rate limiter's storage: no extra Redis round trip per limited request, O(1) per hit.

Stock flask-limiter asks Redis twice per request: once to take a slot and once more,
after the view, for the X-RateLimit-* headers. OneTripRedisStorage, a `limits` storage
registered under its own URI scheme (the library's public extension point), takes the
slot and reads the window in one script (lib.lua, rate_window) and hands that window to
the header read; on the endpoints that reach Redis through one domain script, the hit
rides on that script instead (rate_rider.py), so the request makes one round trip in
all. It runs on the app's own client, so it works on whatever topology REDIS_URL names.
The strategy is limits' sliding-window counter: two counts per limit, kept in one record,
so a hit costs the same whatever the limit (a moving window keeps one entry per request
in the window).
"""

from __future__ import annotations

import json
import logging
import time

import orjson
import redis
from flask import current_app, g, has_request_context, request
from limits.storage import RedisStorage, Storage

from app import auth_failures, rate_rider
from app.domain.lua_source import source
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
        """Register the library's scripts and ours (lua/rate_hit.lua: lib.lua's rate_window)."""
        super().initialize_storage(uri)
        self.lua_rate_hit = self.get_connection().register_script(source("rate_hit"))

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """Take `amount` if the weighted count allows; remember the window for this request.

        On a riding endpoint the hit waits for the view's script (rate_rider.py) and this
        answers True at once: the script refuses the operation when the slot is not there.
        """
        hit = {
            "record": self._record_key(key),
            "limit": limit,
            "expiry_ms": expiry * 1000,
            "cost": amount,
            "now": int(time.time() * 1000),
        }
        failures = auth_failures.counter() if has_request_context() else None
        if failures:
            hit["failures"], hit["failure_limit"] = failures
        return rate_rider.wait_for_a_script(hit) or self.take(hit)

    def take(self, hit: dict) -> bool:
        """One hit on its own: one round trip; True when the slot was taken."""
        try:
            # The record routes the call: every key it touches shares its hash tag.
            reply = self.lua_rate_hit(keys=[hit["record"]], args=["", json.dumps({"hit": hit})])
            window = orjson.loads(reply)["rate"]
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
            window = [1, 0, 0, 0, 0]
        return rate_rider.note_window(hit["record"], window)

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        """The window acquire_sliding_window_entry read in this request, else from Redis."""
        current_key = self._record_key(key)
        if has_request_context():
            cached = g.get("rate_windows", {}).get(current_key)
            if cached is not None:
                return cached
            if rate_rider.hit_lost():
                # Its script call failed, so the answer is a 503 without these headers
                # (ratelimit.py); asking Redis again would only wait out another timeout.
                return 0, 0.0, 0, 0.0
        # The record as lib.lua's rate_window keeps it (limits' own reader expects two
        # keys).
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
