"""Task requests and responses."""

from __future__ import annotations

from datetime import UTC

from marshmallow import ValidationError, fields, validate, validates_schema

from app.domain.ids import AGENT_NAME, TASK_ID
from app.domain.model import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    MAX_DEPENDENCIES,
    MAX_RETRIES_LIMIT,
    MAX_SCHEDULE_SECONDS,
    PRIORITIES,
    RETRYABLE_STATUSES,
    STATUSES,
    TASK_TYPES,
)
from app.schemas.common import COUNT, SUCCESS, FullMatch, JsonObject, Schema, StrictSchema, describe

_TYPE = validate.OneOf(TASK_TYPES, error="Must be one of: {choices}.")
_NAME = validate.Length(min=1, max=200)
_AGENT = FullMatch(AGENT_NAME, error="Must be an agent name like dev_agent.")
_TASK_ID = FullMatch(TASK_ID, error="Must be a task id (UUID4).")
# A fencing token from claim: heartbeat, status and cancel refuse a stale one (409).
_LEASE_TOKEN = {
    "strict": True,
    "validate": validate.Range(min=1),
    "metadata": {"description": "The lease_token claim returned (or send X-Lease-Token)"},
}


class JsonBoolean(fields.Boolean):
    """JSON true or false only; marshmallow would also take 0, 1, "yes" or "off"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class SlaSchema(StrictSchema):
    """A service-level target and deadline; missing ones default by priority."""

    target = fields.String(validate=validate.Length(max=64))
    deadline = fields.AwareDateTime(format="iso", default_timezone=UTC)


class TaskCreateSchema(StrictSchema):
    """A new task; its type picks the agent, its priority and type may gate it."""

    type = fields.String(required=True, validate=_TYPE)
    priority = fields.String(load_default=DEFAULT_PRIORITY, validate=validate.OneOf(PRIORITIES))
    source = fields.String(load_default="api", validate=_NAME)
    payload = JsonObject(load_default=dict)
    metadata = JsonObject(load_default=dict)
    trace_id = fields.String(validate=validate.Length(min=1, max=128))
    parent_task_id = fields.String(validate=_TASK_ID)
    sla = fields.Nested(SlaSchema)
    # ISO 8601; a deadline without an offset is read as UTC, like every time we show.
    sla_deadline = fields.AwareDateTime(format="iso", default_timezone=UTC)
    # strict: a JSON integer, not 2.5 silently cut to 2 nor the string "3".
    max_retries = fields.Integer(
        load_default=DEFAULT_MAX_RETRIES,
        strict=True,
        validate=validate.Range(min=0, max=MAX_RETRIES_LIMIT),
    )
    requires_approval = JsonBoolean(load_default=False)
    # Run later: at run_at (ISO 8601, read as UTC without an offset; in the future by
    # Redis' clock) or after delay_seconds; at most 30 days ahead either way.
    run_at = fields.AwareDateTime(format="iso", default_timezone=UTC)
    delay_seconds = fields.Integer(
        strict=True, validate=validate.Range(min=0, max=MAX_SCHEDULE_SECONDS)
    )
    # Run after these tasks complete; if one fails or is cancelled, so is this one.
    depends_on = fields.List(
        fields.String(validate=_TASK_ID), validate=validate.Length(max=MAX_DEPENDENCIES)
    )

    @validates_schema
    def _one_run_time(self, data, **_kwargs):
        if "run_at" in data and "delay_seconds" in data:
            raise ValidationError("Give run_at or delay_seconds, not both.", "run_at")


class SlaOutSchema(Schema):
    """The task's SLA target and deadline (ISO 8601 UTC)."""

    target = fields.String(allow_none=True)
    deadline = fields.String(allow_none=True)


class ReceiptSchema(Schema):
    """What people approved: who, when, and the SHA-256 of the canonical payload JSON."""

    approval_id = fields.String(required=True)
    approved_by = fields.List(fields.String(), required=True)
    payload_sha256 = fields.String(
        required=True,
        metadata={
            "description": "sha256 hex of json.dumps(payload, sort_keys=True, "
            "separators=(',', ':'), ensure_ascii=False) in UTF-8",
            "example": "5d41402abc4b2a76b9719d911017c592" * 2,
        },
    )
    decided_at = fields.String(required=True, metadata={"format": "date-time"})


class TaskSchema(Schema):
    """A task as stored, every field present (null when unset)."""

    task_id = fields.String(required=True)
    type = fields.String(required=True)
    priority = fields.String(required=True)
    source = fields.String(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    payload = JsonObject()
    metadata = JsonObject()
    trace_id = fields.String(allow_none=True)
    assigned_to = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    updated_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    started_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    completed_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    sla = fields.Nested(SlaOutSchema, allow_none=True)
    parent_task_id = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    retry_count = fields.Integer()
    max_retries = fields.Integer()
    approval_id = fields.String(allow_none=True)
    claimed_by = fields.String(allow_none=True)
    lease_expires_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    approval = fields.Nested(
        ReceiptSchema,
        allow_none=True,
        metadata={"description": "The approval receipt, once people approved the task"},
    )
    lease_token = fields.Integer(allow_none=True)
    run_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    depends_on = fields.List(fields.String(), allow_none=True)


class TaskCreatedSchema(Schema):
    """The created task, and its approval id when it waits at the gate."""

    success = fields.Boolean(required=True)
    task_id = fields.String(required=True)
    message = fields.String(required=True)
    task = fields.Nested(TaskSchema, required=True)
    approval_id = fields.String()


class TaskEnvelopeSchema(Schema):
    """One task."""

    success = fields.Boolean(required=True)
    task_id = fields.String(required=True)
    task = fields.Nested(TaskSchema, required=True)
    message = fields.String()
    lease_token = fields.Integer(metadata={"description": "Claim only: this lease's token"})


class TaskListQuerySchema(StrictSchema):
    """Filters, page size and cursor of a listing (newest first)."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    type = fields.String(validate=_TYPE)
    assigned_to = fields.String(validate=_AGENT)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    cursor = fields.String(validate=validate.Length(min=1, max=64))


class TaskListSchema(Schema):
    """One page of tasks and the cursor of the next (null at the end)."""

    success = fields.Boolean(required=True)
    count = fields.Integer(required=True)
    tasks = fields.List(fields.Nested(TaskSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class StatusUpdateSchema(StrictSchema):
    """The state to move to and, for failures, why."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    error = fields.String(validate=validate.Length(max=2000))
    lease_token = fields.Integer(**_LEASE_TOKEN)


class CancelSchema(StrictSchema):
    """Why the task is cancelled (becomes its error)."""

    reason = fields.String(validate=validate.Length(max=1000))
    lease_token = fields.Integer(**_LEASE_TOKEN)


class ClaimSchema(StrictSchema):
    """Which agent's queue to take from, and for how long to hold the task."""

    agent = fields.String(required=True, validate=_AGENT)
    lease_seconds = fields.Integer(strict=True, validate=validate.Range(min=1, max=43200))


class HeartbeatSchema(StrictSchema):
    """A new lease length; by default the one the claim chose."""

    lease_seconds = fields.Integer(strict=True, validate=validate.Range(min=1, max=43200))
    lease_token = fields.Integer(**_LEASE_TOKEN)


class ExplanationSchema(Schema):
    """Why a task is where it is: what it waits for, in one sentence, and the facts."""

    task_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    waiting_for = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(("approval", "schedule", "dependencies", "agent", "lease")),
        metadata={"description": "What the task waits for; null once it ended"},
    )
    summary = fields.String(
        required=True,
        metadata={"example": "Waiting for 1 more approval from group sre; expires in 2 h 10 min."},
    )
    details = fields.Dict(
        required=True,
        metadata={
            "description": "One section per fact that applies, keyed by name: approval "
            "(received, required, approved_by, can_act, expires_at, expires_in_seconds, "
            "escalated, escalation, payload_version, payload_sha256), agent (agent, "
            "queue_position, ahead, queued), lease (holder, expires_at, expires_in_seconds, "
            "retry_count, max_retries), outcome (status, finished_at, error)",
            "example": {
                "approval": {
                    "approval_id": "apr-1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b",
                    "status": "pending",
                    "policy": "production-deploys",
                    "received": 1,
                    "required": 2,
                    "approved_by": ["apikey:alice"],
                    "can_act": ["group:sre"],
                    "expires_at": "2026-12-01T06:10:00.000Z",
                    "expires_in_seconds": 7800,
                    "escalated": False,
                    "payload_version": 1,
                    "payload_sha256": "3f79bb7b435b0532" * 4,
                }
            },
        },
    )
    lease_token = fields.Integer(**_LEASE_TOKEN)


class RedriveSchema(StrictSchema):
    """Which dead letters to send back to their queues, oldest first."""

    status = fields.String(required=True, validate=validate.OneOf(RETRYABLE_STATUSES))
    type = fields.String(validate=_TYPE)
    assigned_to = fields.String(validate=_AGENT)
    limit = fields.Integer(strict=True, load_default=1000, validate=validate.Range(min=1, max=1000))


class RedriveResultSchema(Schema):
    """How many tasks went back to their queues, and which."""

    success = fields.Boolean(required=True)
    count = fields.Integer(required=True)
    task_ids = fields.List(fields.String(), required=True)


TASK_ID_EXAMPLE = "3f2b8c1e-7d4a-4e8b-9c1f-2a6d5e4b7c90"
TIME_EXAMPLE = "2026-01-05T10:15:00.000Z"
# The request example Swagger UI and ReDoc send as-is: it must create a task, ungated.
CREATE_EXAMPLE = {
    "type": "bugfix",
    "priority": "P2",
    "payload": {"repo": "web", "issue": 42, "summary": "Login button does nothing on Safari"},
    "metadata": {"requested_by": "alice"},
    "sla": {"target": "4h"},
}
_SLA = (
    "Service-level target and deadline. Give either `sla` (an object) or the shorthand "
    "`sla_deadline`; missing parts default by priority"
)

describe(
    SlaSchema,
    target=("Free-text target, e.g. a duration", "4h"),
    deadline=("When the task must be done (ISO 8601; no offset = UTC)", "2030-01-01T12:00:00Z"),
)
describe(
    SlaOutSchema,
    target=("Free-text target", "4h"),
    deadline=("Deadline, ISO 8601 UTC", TIME_EXAMPLE),
)
describe(
    TaskCreateSchema,
    type="What kind of work it is; picks the agent (see the routing table)",
    priority="P0 (most urgent) to P3; P0 and P1 wait for approval by default",
    source="Who or what asked for it (free text, default `api`)",
    payload="The work itself, any JSON object the agent understands",
    metadata="Extra JSON for people and tools; never read by the service",
    trace_id="Correlates the task's events with your own traces (default: the request id)",
    parent_task_id="An existing task this one belongs to (404-free: it must exist, else 422)",
    sla=_SLA,
    sla_deadline="Shorthand for `sla.deadline` (ISO 8601; no offset = UTC); give one of the two",
    max_retries="How many times an expired lease may requeue it before it fails",
    requires_approval="Hold it for a human approval even if the policy would not",
)
describe(
    TaskSchema,
    task_id=("The task's id (UUID4)", TASK_ID_EXAMPLE),
    type=("Kind of work", "bugfix"),
    priority=("P0 (most urgent) to P3", "P2"),
    source=("Who or what asked for it", "api"),
    status=(
        "awaiting_approval, assigned (queued), in_progress, completed, failed, cancelled",
        "assigned",
    ),
    payload=("The work itself", {"repo": "web", "issue": 42}),
    metadata=("Extra JSON given at creation", {"requested_by": "alice"}),
    trace_id=("Correlation id of its events", "req-7f3a9c"),
    assigned_to=("The agent whose queue it is in (from the routing table)", "dev_agent"),
    created_by=("Principal that created it", "apikey:agent"),
    created_at=("Creation time (Redis clock, UTC)", TIME_EXAMPLE),
    updated_at=("Last change (Redis clock, UTC)", TIME_EXAMPLE),
    started_at=("When it was first claimed", None),
    completed_at=("When it reached a terminal state", None),
    sla=("Service-level target and deadline", {"target": "4h", "deadline": None}),
    parent_task_id=("The task it belongs to", None),
    error=("Why it failed or was cancelled", None),
    retry_count=("Leases that expired so far", 0),
    max_retries=("Expired leases allowed before it fails", 3),
    approval_id=("Its approval, when it was gated", None),
    claimed_by=("Principal holding its lease", None),
    lease_expires_at=("When the lease runs out unless renewed by a heartbeat", None),
)
describe(
    TaskCreatedSchema,
    success=SUCCESS,
    task_id=("The new task's id (also in Location)", TASK_ID_EXAMPLE),
    message=("What happened", "Task created and assigned to dev_agent"),
    task="The stored task",
    approval_id="Present when the task waits for approval: decide it at /approvals/{id}",
)
describe(
    TaskEnvelopeSchema,
    success=SUCCESS,
    task_id=("The task's id", TASK_ID_EXAMPLE),
    task="The task",
    message=("What happened, for changes", "Task claimed"),
)
describe(
    TaskListQuerySchema,
    status="Only tasks in this state",
    type="Only tasks of this type",
    assigned_to="Only tasks routed to this agent",
    limit="Page size (1-1000)",
    cursor="`next_cursor` of the previous page",
)
describe(
    TaskListSchema,
    success=SUCCESS,
    count=COUNT,
    tasks="Newest first",
    next_cursor=("Pass as `cursor` for the next page; null on the last page", None),
)
describe(
    StatusUpdateSchema,
    status=("The state to move to (the state machine decides)", "completed"),
    error="Why, when moving to failed",
)
describe(CancelSchema, reason=("Why (stored as the task's error)", "Duplicate of another task"))
describe(
    ClaimSchema,
    agent=("The agent whose queue to take from", "dev_agent"),
    lease_seconds=(
        "How long to hold it without a heartbeat (default ORCHESTRATOR_LEASE_SECONDS)",
        300,
    ),
)
describe(HeartbeatSchema, lease_seconds=("New lease length (default: the claim's)", 300))
