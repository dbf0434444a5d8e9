"""Service, health and stats responses."""

from __future__ import annotations

from marshmallow import fields

from app.schemas.common import Schema


class QueueStatsSchema(Schema):
    """Tasks queued, running, waiting (gate, schedule, dependencies), and the totals that
    completed, failed or were cancelled."""

    pending = fields.Integer(required=True)
    in_progress = fields.Integer(required=True)
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    cancelled = fields.Integer()
    awaiting_approval = fields.Integer()
    scheduled = fields.Integer(metadata={"description": "Tasks waiting for their run time"})
    blocked = fields.Integer(metadata={"description": "Tasks waiting for their dependencies"})


class ServiceSchema(Schema):
    """What is answering."""

    service = fields.String(required=True)
    version = fields.String(required=True)
    status = fields.String(required=True)


class WebhookHealthSchema(Schema):
    """The deliverers' backlog: the event stream's consumer group and the schedule."""

    consumer_group = fields.String(metadata={"description": "ready, or missing"})
    lag = fields.Integer(allow_none=True, metadata={"description": "events not read yet"})
    unacknowledged = fields.Integer(allow_none=True)
    consumers = fields.Integer(allow_none=True)
    pending_deliveries = fields.Integer(allow_none=True)
    delivered = fields.Integer()
    dead = fields.Integer()
    attempts = fields.Integer()


class MemorySchema(Schema):
    """Redis memory use against its maxmemory (0: no limit)."""

    used_bytes = fields.Integer(required=True)
    max_bytes = fields.Integer(required=True)


class HealthSchema(Schema):
    """Liveness, Redis connectivity and memory, and the queue counters."""

    status = fields.String(
        required=True,
        metadata={"description": "healthy, degraded (Redis memory high: creates refused) "
                  "or unhealthy"},
    )  # fmt: skip
    redis = fields.String(
        required=True, metadata={"description": "connected, disconnected or out_of_memory"}
    )
    redis_memory = fields.Nested(MemorySchema)
    queue_stats = fields.Nested(QueueStatsSchema)
    approvals_pending = fields.Integer()
    webhooks = fields.Nested(WebhookHealthSchema)
    version = fields.String()
    environment = fields.String()
    detail = fields.String()


class StatsSchema(Schema):
    """Counters by queue, status, agent and approvals, at Redis' current time."""

    queue = fields.Nested(QueueStatsSchema, required=True)
    tasks = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    agents = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    approvals = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    timestamp = fields.String(required=True, metadata={"format": "date-time"})
