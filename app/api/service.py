"""The service itself: `/`, `/health` and `/stats`."""

from __future__ import annotations

import logging

import redis
from flask_smorest import Blueprint

from app import __version__
from app.extensions import get_settings, services
from app.schemas.common import ErrorSchema
from app.schemas.stats import HealthSchema, ServiceSchema, StatsSchema

log = logging.getLogger("orchestrator.health")
blp = Blueprint("service", __name__, description="Service status")
stats_blp = Blueprint("stats", __name__, description="Queue statistics")


@blp.route("/", methods=["GET"])
@blp.response(200, ServiceSchema)
def root():
    """Name, version and status of the service."""
    return {"service": "orchestrator-api", "version": __version__, "status": "running"}


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="Redis unreachable")
def health():
    """Liveness and Redis connectivity with the queue counters, in one Redis round trip."""
    settings = get_settings()
    try:
        stats = services().stats.read()
    except (redis.ConnectionError, redis.TimeoutError) as error:
        log.warning("health check: redis unavailable (%s)", type(error).__name__)
        return {
            "status": "unhealthy",
            "redis": "disconnected",
            "version": __version__,
            "environment": settings.environment,
            "detail": "Redis unavailable",
        }, 503
    return {
        "status": "healthy",
        "redis": "connected",
        "queue_stats": stats["queue"],
        "approvals_pending": stats["approvals"]["pending"],
        "version": __version__,
        "environment": settings.environment,
    }


@stats_blp.route("/stats", methods=["GET"])
@stats_blp.response(200, StatsSchema)
@stats_blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
def stats():
    """Counters by queue, status, agent and approvals, with Redis' current time."""
    return services().stats.read()
