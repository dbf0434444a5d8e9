"""Failed authentications, limited per client address before anything else is checked.

Without it a client can tell valid API keys from invalid ones (404 against 401) as fast
as it can send requests. Each bad credential counts against its address; past
ORCHESTRATOR_RATE_LIMIT_AUTH_FAILURES a minute, every request from that address is 429
whatever credential it carries, so a valid guess answers exactly like an invalid one.
The check costs no round trip of its own: the limiter's script reads the count in the
same call that takes the request's slot (app/ratelimit.py).
"""

from __future__ import annotations

import ipaddress

from flask import Flask, current_app, g, request

from app import metrics
from app.auth import authenticate
from app.config import Settings
from app.domain.keys import Keys
from app.errors import Unauthorized, error_response
from app.services import current_settings, redis_client, services

WINDOW_SECONDS = 60
DETAIL = "Too many failed authentications from this address; retry later"


def _address() -> str:
    return request.remote_addr or "unknown"


def _exempt(address: str, networks) -> bool:
    if not networks:  # the usual case: no address to parse
        return False
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def refused(retry_after: int = WINDOW_SECONDS):
    """The one 429 a blocked address gets, whatever its credential."""
    metrics.auth_failure_limited()
    return error_response(429, DETAIL, headers={"Retry-After": str(max(1, retry_after))})


def counter() -> tuple[str, int] | None:
    """(failure counter key, limit) for this request's address; None when not checked."""
    return g.get("auth_failure_counter")


def check_and_count():
    """before_request: count a bad credential; refuse once the address is over its limit."""
    settings = current_settings()
    address = _address()
    if _exempt(address, settings.rate_limit_exempt_networks):
        return None
    key = current_app.extensions[KEYS].name("auth_failures", address)
    try:
        authenticate()
    except Unauthorized:
        return _count(address, settings)
    # Good or no credentials: the limiter's script refuses them too while the address
    # is blocked, so a valid key guessed from there answers like an invalid one.
    g.auth_failure_counter = (key, settings.rate_limit_auth_failures)
    if settings.uses_memory_redis:  # no one-trip storage to fold the check into
        count = int(redis_client(current_app).get(key) or 0)
        if count >= settings.rate_limit_auth_failures:
            return refused()
    return None


def _count(address: str, settings):
    counted = services().scripts.count_auth_failure(address=address, window=WINDOW_SECONDS)
    if counted["failures"] > settings.rate_limit_auth_failures:
        return refused(int(counted["ttl"]))
    return None


def count_failure():
    """A bad credential found after the headers (the /ui sign-in form's key): counted
    like one in the headers; the 429 once the address is over its limit, else None."""
    settings = current_settings()
    address = _address()
    if _exempt(address, settings.rate_limit_exempt_networks):
        return None
    return _count(address, settings)


KEYS = f"{__name__}.keys"


def init_app(app: Flask, settings: Settings) -> None:
    """Keep the key layout at hand; ratelimit.init_app installs check_and_count in order."""
    app.extensions[KEYS] = Keys(settings.queue_prefix)  # built once, not per request
