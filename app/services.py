"""The services container: one app's Redis client and the domain services built on it.

Blueprints and the CLI reach the domain only through `services()`, and settings through
`current_settings()`; nothing else is kept per app.
"""

from __future__ import annotations

import redis
from flask import Flask, current_app

from app.config import Settings
from app.domain.approvals import ApprovalGate
from app.domain.delivery import DeliveryQueue
from app.domain.events import EventBus
from app.domain.explain import Explainer
from app.domain.scripts import Scripts
from app.domain.stats import StatsReader
from app.domain.tasks import TaskStore
from app.domain.webhooks import WebhookStore
from app.rate_rider import RateRider
from app.redis_client import REDIS_LOCATION, Breaker, make_redis, redis_location

SETTINGS = "orchestrator.settings"
REDIS = "orchestrator.redis"
SERVICES = "orchestrator.services"
BREAKER = "orchestrator.redis_breaker"


class Services:
    """The domain services of one app, sharing its scripts and Redis client."""

    def __init__(self, client: redis.Redis, settings: Settings):
        scripts = Scripts(client, settings, rider=RateRider())
        # For the app's own script calls outside the domain services (auth_failures.py).
        self.scripts = scripts
        self.tasks = TaskStore(scripts, settings)
        self.approvals = ApprovalGate(scripts, settings)
        self.events = EventBus(scripts)
        self.stats = StatsReader(scripts)
        self.explainer = Explainer(scripts)
        self.webhooks = WebhookStore(scripts, settings)
        self.deliveries = DeliveryQueue(client, scripts, settings)


def init_app(app: Flask, settings: Settings) -> None:
    """Create this app's Redis client (one pool per process, built after fork) and services."""
    client = make_redis(settings)
    app.extensions[REDIS] = client
    app.extensions[SERVICES] = Services(client, settings)
    app.extensions[REDIS_LOCATION] = redis_location(settings.redis_url)
    # At least as long as one Redis call may wait, so a hung server costs each
    # Redis-free endpoint one timeout per window, not one per request.
    app.extensions[BREAKER] = Breaker(max(2.0, settings.health_check_timeout))


def services() -> Services:
    """The current app's domain services."""
    return current_app.extensions[SERVICES]


def current_settings() -> Settings:
    """The current app's settings."""
    return current_app.extensions[SETTINGS]


def redis_client(app: Flask) -> redis.Redis:
    """An app's Redis client (the limiter shares its pool)."""
    return app.extensions[REDIS]


def redis_breaker(app: Flask | None = None) -> Breaker:
    """An app's (default: the current app's) Redis breaker, for the Redis-free endpoints."""
    return (app or current_app).extensions[BREAKER]
