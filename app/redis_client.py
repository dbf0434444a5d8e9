"""The Redis client factory: the one place that turns REDIS_URL into a client and pool."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from app.config import Settings


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
