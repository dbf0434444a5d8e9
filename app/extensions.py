"""The Redis client factory, the domain services built on it, and accessors for both."""

from __future__ import annotations

import logging

import redis
from flask import Flask, current_app
from flask_smorest import Api as SmorestApi
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from app.config import Settings
from app.errors import handle_http_exception
from app.schemas.common import ErrorSchema

log = logging.getLogger("orchestrator")


class Api(SmorestApi):
    """flask-smorest, answering and documenting its errors in our {"detail": ...} shape."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        """Werkzeug and webargs errors as {"detail": ...}."""
        return handle_http_exception(error)


def redis_connection_kwargs(settings: Settings) -> dict:
    """Timeouts and retries that keep every Redis failure within HEALTH_CHECK_TIMEOUT + 1 s.

    A refused connection is retried twice with a short backoff (a restart or fail-over);
    a timeout is not retried, so a frozen server costs one timeout, not three.
    """
    timeout = settings.health_check_timeout
    kwargs: dict = {
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
        kwargs["ssl_cert_reqs"] = "required" if settings.redis_tls_verify else "none"
        kwargs["ssl_check_hostname"] = settings.redis_tls_verify
    return kwargs


def make_redis(settings: Settings) -> redis.Redis:
    """The one Redis client of this process; `memory://` gives an in-process fakeredis."""
    if settings.uses_memory_redis:
        import fakeredis

        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    pool = redis.ConnectionPool.from_url(
        settings.redis_url, decode_responses=True, **redis_connection_kwargs(settings)
    )
    return redis.Redis(connection_pool=pool)


def get_redis() -> redis.Redis:
    """The current app's Redis client."""
    return current_app.extensions["orchestrator.redis"]


def get_settings() -> Settings:
    """The current app's settings."""
    return current_app.extensions["orchestrator.settings"]


def init_redis(app: Flask, settings: Settings) -> redis.Redis:
    """Create the Redis client for this app (one pool per process, built after fork)."""
    client = make_redis(settings)
    app.extensions["orchestrator.redis"] = client
    app.extensions["orchestrator.settings"] = settings
    app.extensions["orchestrator.services"] = Services(client, settings)
    return client


class Services:
    """The domain services of one app, built on its Redis client."""

    def __init__(self, client: redis.Redis, settings: Settings):
        from app.domain.approvals import ApprovalGate
        from app.domain.events import EventBus
        from app.domain.scripts import Scripts
        from app.domain.stats import StatsReader
        from app.domain.tasks import TaskStore

        self.redis = client
        self.scripts = Scripts(client, settings)
        self.tasks = TaskStore(self.scripts, settings)
        self.approvals = ApprovalGate(self.scripts, settings)
        self.events = EventBus(self.scripts)
        self.stats = StatsReader(self.scripts)


def services() -> Services:
    """The current app's domain services."""
    return current_app.extensions["orchestrator.services"]
