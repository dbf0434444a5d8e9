"""The service itself: `/`, `/health` and `/stats`."""

from __future__ import annotations

import logging

import redis
from flask import Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from app import __version__, metrics
from app.errors import REDIS_UNAVAILABLE, Forbidden, Unauthorized
from app.parsing import Blueprint
from app.redis_client import REDIS_LOCATION
from app.schemas.common import ErrorSchema
from app.schemas.stats import HealthSchema, ServiceSchema, StatsSchema
from app.services import current_settings, redis_breaker, services

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
    """Liveness, Redis connectivity, the queue counters and the deliverers' backlog, in one
    Redis round trip."""
    settings = current_settings()
    unhealthy = {"status": "unhealthy", "version": __version__, "environment": settings.environment}
    try:
        stats = services().stats.read()
    except redis.OutOfMemoryError:
        log.warning("health check: redis at %s out of memory", _where())
        return {**unhealthy, "redis": "out_of_memory", "detail": "Redis is out of memory"}, 503
    except REDIS_UNAVAILABLE as error:
        log.warning("health check: redis at %s unavailable (%s)", _where(), type(error).__name__)
        return {**unhealthy, "redis": "disconnected", "detail": "Redis unavailable"}, 503
    memory = stats["memory"]
    state = memory_state(memory, settings.redis_memory_high_watermark)
    if state == "out_of_memory":
        return {**unhealthy, "redis": state, "redis_memory": memory,
                "detail": "Redis is out of memory"}, 503  # fmt: skip
    extra = {"detail": "Redis memory is above its high watermark; new tasks are refused"}
    # Load balancers call this every few seconds: the body is built to HealthSchema
    # directly (jsonify passes through flask-smorest untouched) instead of dumped.
    oldest = stats["oldest_waiting_seconds"]
    return jsonify(
        status="degraded" if state == "memory_high" else "healthy",
        redis="connected",
        queue_stats=stats["queue"],
        approvals_pending=stats["approvals"]["pending"],
        redis_memory=memory,
        webhooks=stats["webhooks"],
        version=__version__,
        environment=settings.environment,
        **(extra if state == "memory_high" else {}),
        uptime_seconds=metrics.uptime_seconds(),
        agents={
            agent: {"queued": queued, "oldest_waiting_seconds": oldest.get(agent)}
            for agent, queued in stats["agents"].items()
        },
        # An age of 0.0 (a task waiting since this millisecond) is a task waiting: only
        # no task at all is null.
        oldest_waiting_seconds=max(
            (age for age in oldest.values() if age is not None), default=None
        ),
        oldest_approval_seconds=stats["oldest_approval_seconds"],
    )


def memory_state(memory: dict, watermark: float) -> str:
    """ok, memory_high (creates refused) or out_of_memory (writes refused) for /health."""
    used, limit = memory["used_bytes"], memory["max_bytes"]
    if not limit:
        return "ok"
    if used >= limit:
        return "out_of_memory"
    return "memory_high" if used * 100 >= limit * watermark else "ok"


@blp.route("/metrics", methods=["GET"])
@blp.doc(
    security=[{"metricsToken": []}, {}],
    responses={
        "200": {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
@blp.alt_response(401, schema=ErrorSchema, description="ORCHESTRATOR_METRICS_TOKEN required")
@blp.alt_response(403, schema=ErrorSchema, description="Production without a metrics token")
def prometheus_metrics():
    """Prometheus metrics: every worker's counters plus gauges read from Redis now."""
    settings = current_settings()
    token = settings.metrics_token
    if not token and not settings.metrics_public:
        raise Forbidden(
            "/metrics is closed: set ORCHESTRATOR_METRICS_TOKEN "
            "(or ORCHESTRATOR_METRICS_PUBLIC=true to open it)"
        )
    if token and not metrics.token_matches(request.headers.get("Authorization", ""), token):
        metrics.auth_failure("metrics_token")
        raise Unauthorized(
            "A valid metrics token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    # The gauges settle what fell due first, like /stats: a scrape never shows a task
    # as running after its lease expired.
    body = metrics.render_metrics(_stats_for_scrape, current_settings().release)
    # CONTENT_TYPE_LATEST already names the charset; mimetype= would add it twice.
    return Response(body, content_type=CONTENT_TYPE_LATEST)


def _stats_for_scrape() -> dict:
    """The stats, or at once a failure while Redis has just failed (redis_up 0)."""
    breaker = redis_breaker()
    if breaker.is_open():
        raise redis.ConnectionError("redis failed moments ago")
    try:
        return services().stats.read()
    except redis.RedisError as error:
        breaker.trip()
        log.warning("metrics: redis at %s unavailable (%s)", _where(), type(error).__name__)
        raise


def _where() -> str:
    return current_app.extensions.get(REDIS_LOCATION, "?")


@stats_blp.route("/stats", methods=["GET"])
@stats_blp.response(200, StatsSchema)
def stats():
    """Counters by queue, status, agent and approvals, with Redis' current time."""
    return services().stats.read()
