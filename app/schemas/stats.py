"""Service, health and stats responses."""

from __future__ import annotations

from marshmallow import fields

from app.schemas.common import TIME_EXAMPLE, Schema, Timestamp, describe
from app.schemas.envelopes import ListEnvelopeSchema


class QueueStatsSchema(Schema):
    """Tasks queued, running, waiting (gate, schedule, dependencies), and the totals that
    completed, failed or were cancelled."""

    pending = fields.Integer(
        required=True,
        metadata={"description": "Tasks waiting in a queue (status assigned); same as queued"},
    )
    queued = fields.Integer(
        metadata={"description": "Tasks waiting in a queue (status assigned)", "example": 3}
    )
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
    unacknowledged = fields.Integer(
        allow_none=True,
        metadata={"description": "Events a deliverer read but has not fanned out yet"},
    )
    consumers = fields.Integer(
        allow_none=True, metadata={"description": "Deliverers registered in the consumer group"}
    )
    pending_deliveries = fields.Integer(
        allow_none=True, metadata={"description": "Deliveries waiting for their next attempt"}
    )
    delivered = fields.Integer(metadata={"description": "Deliveries a receiver accepted, ever"})
    dead = fields.Integer(
        metadata={"description": "Deliveries given up after ORCHESTRATOR_WEBHOOK_MAX_AGE, ever"}
    )
    attempts = fields.Integer(metadata={"description": "Delivery attempts started, ever"})


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
    uptime_seconds = fields.Float(
        metadata={"description": "Seconds since this instance started", "example": 3600.5}
    )
    agents = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(),
        metadata={
            "description": "Per agent: queued tasks and the age in seconds of its oldest one",
            "example": {"dev_agent": {"queued": 3, "oldest_waiting_seconds": 42.5}},
        },
    )
    oldest_waiting_seconds = fields.Float(
        allow_none=True,
        metadata={"description": "Age of the oldest task waiting in any queue (null: none)"},
    )
    oldest_approval_seconds = fields.Float(
        allow_none=True,
        metadata={"description": "Age of the oldest pending approval (null: none)"},
    )


class StatsSchema(Schema):
    """Counters by queue, status, agent and approvals, at Redis' current time."""

    queue = fields.Nested(QueueStatsSchema, required=True)
    tasks = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    agents = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    approvals = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    timestamp = Timestamp(required=True)


class AgentSchema(Schema):
    """One agent: the work waiting for it and the last time it showed it is alive."""

    agent = fields.String(required=True)
    queued = fields.Integer(required=True)
    in_progress = fields.Integer(required=True)
    last_claim_at = Timestamp(allow_none=True)
    last_heartbeat_at = Timestamp(allow_none=True)


class AgentListSchema(ListEnvelopeSchema):
    """Every agent seen or routed to, sorted by name."""

    agents = fields.List(fields.Nested(AgentSchema), required=True)


describe(
    QueueStatsSchema,
    in_progress=("Tasks running now", 1),
    completed=("Tasks that ever completed", 12),
    failed=("Tasks that ever failed", 1),
    cancelled=("Tasks that were ever cancelled", 0),
    awaiting_approval=("Tasks waiting at the approval gate", 1),
)
describe(
    ServiceSchema,
    service=("Service name", "orchestrator-api"),
    version=("Its version", "1.0.0"),
    status=("Always running", "running"),
)
describe(
    HealthSchema,
    status=("healthy, or unhealthy (503) when Redis is unreachable", "healthy"),
    redis=("connected or disconnected", "connected"),
    queue_stats="Task counters",
    approvals_pending=("Approvals waiting for a decision", 1),
    version=("Service version", "1.0.0"),
    environment=("ENVIRONMENT", "production"),
    detail="Why it is unhealthy (503 only)",
)
describe(
    StatsSchema,
    queue="Task counters (as in /health)",
    tasks=("Stored tasks by status", {"assigned": 3, "in_progress": 1}),
    agents=("Ready tasks per agent", {"dev_agent": 3}),
    approvals=("Pending approvals", {"pending": 1}),
    timestamp=("Redis' time when read (UTC)", TIME_EXAMPLE),
)
describe(AgentListSchema, agents="Sorted by name")
describe(
    AgentSchema,
    agent=("Agent name", "dev_agent"),
    queued=("Tasks ready in its queue", 2),
    in_progress=("Its tasks running now", 1),
    last_claim_at=(
        "Last POST /tasks/claim for it, found work or not (Redis time; null: never)",
        TIME_EXAMPLE,
    ),
    last_heartbeat_at=(
        "Last heartbeat on one of its tasks (Redis time; null: never)",
        "2026-01-05T10:15:30.000Z",
    ),
)
describe(
    MemorySchema,
    used_bytes=("Redis used_memory", 52428800),
    max_bytes=("Redis maxmemory (0: no limit)", 268435456),
)
describe(
    HealthSchema,
    redis_memory="Redis memory against its maxmemory (creates stop at the high watermark)",
    webhooks="The webhook deliverers' backlog",
)
