"""The Redis client factory: the one place that turns REDIS_URL into a client and pool."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from app.config import Settings

# app.extensions key of where the app's Redis is (redis_location), for log lines.
REDIS_LOCATION = "orchestrator.redis_location"


def connection_options(settings: Settings) -> dict:
    """Timeouts and retries that keep every Redis failure within HEALTH_CHECK_TIMEOUT + 1 s.

    A refused connection is retried twice with a short backoff (a restart or fail-over);
    a timeout is not retried, so a frozen server costs one timeout, not three.
    """
    timeout = settings.health_check_timeout
    options: dict = {
        "socket_timeout": timeout,
        "socket_connect_timeout": max(0.1, min(timeout, 3.0) / 3),
        "retry": Retry(
            ExponentialBackoff(cap=0.2, base=0.05), 2, supported_errors=(redis.ConnectionError,)
        ),
        "retry_on_timeout": False,
        "health_check_interval": 30,
        "max_connections": 64,
    }
    if settings.redis_url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required" if settings.redis_tls_verify else "none"
        options["ssl_check_hostname"] = settings.redis_tls_verify
    return options


def make_redis(settings: Settings) -> redis.Redis:
    """The one Redis client of this process; `memory://` gives an in-process fakeredis."""
    if settings.uses_memory_redis:
        import fakeredis

        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    pool = redis.ConnectionPool.from_url(
        settings.redis_url, decode_responses=True, **connection_options(settings)
    )
    return redis.Redis(connection_pool=pool)


def redis_location(url: str) -> str:
    """Where REDIS_URL points, for log lines: host:port or the socket path, never a password."""
    if url.startswith("memory://"):
        return "memory://"
    parsed = urlsplit(url)
    if parsed.scheme == "unix":
        return parsed.path
    return f"{parsed.hostname or 'localhost'}:{parsed.port or 6379}"


class Breaker:
    """How fast this process reports a Redis failure, not what any request returns.

    After Redis failed, endpoints that do not need it (docs, /metrics, /, /auth/token)
    skip their Redis calls for `seconds` instead of each waiting HEALTH_CHECK_TIMEOUT on
    a hung server: they answer without a rate limit and /metrics says redis_up 0. Data
    endpoints never consult it.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.open_until = 0.0

    def trip(self) -> None:
        """Redis just failed."""
        self.open_until = time.monotonic() + self.seconds

    def is_open(self) -> bool:
        """Whether Redis failed within the last `seconds`."""
        return time.monotonic() < self.open_until
