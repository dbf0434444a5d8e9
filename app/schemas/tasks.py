"""Task requests and responses."""

from __future__ import annotations

from datetime import UTC

from marshmallow import ValidationError, fields, validate, validates_schema

from app.domain.model import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    DEFAULT_SOURCE,
    MAX_DEPENDENCIES,
    MAX_RETRIES_LIMIT,
    MAX_SCHEDULE_SECONDS,
    PRIORITIES,
    STATUSES,
)
from app.schemas.common import (
    AGENT_FIELD,
    TASK_ID_FIELD,
    TASK_TYPE_FIELD,
    JsonObject,
    Schema,
    StrictSchema,
    Timestamp,
)
from app.schemas.envelopes import EnvelopeSchema, ListEnvelopeSchema

_NAME = validate.Length(min=1, max=200)
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


class UtcDeadline(fields.AwareDateTime):
    """An ISO 8601 time (no offset = UTC) that is stored in UTC (records.stamp): one
    whose UTC instant falls outside years 1-9999 (0001-01-01T00:00:00+01:00) cannot be
    written, so it is invalid, not a 500. run_at needs none: Redis' clock bounds it."""

    def __init__(self, **kwargs):
        super().__init__(format="iso", default_timezone=UTC, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment.astimezone(UTC)
        except OverflowError:
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE) from None
        return moment


class SlaSchema(StrictSchema):
    """A service-level target and deadline; missing ones default by priority."""

    target = fields.String(validate=validate.Length(max=64))
    deadline = UtcDeadline()


class TaskCreateSchema(StrictSchema):
    """A new task; its type picks the agent, its priority and type may gate it."""

    type = fields.String(required=True, validate=TASK_TYPE_FIELD)
    priority = fields.String(load_default=DEFAULT_PRIORITY, validate=validate.OneOf(PRIORITIES))
    source = fields.String(load_default=DEFAULT_SOURCE, validate=_NAME)
    payload = JsonObject(load_default=dict)
    metadata = JsonObject(load_default=dict)
    trace_id = fields.String(validate=validate.Length(min=1, max=128))
    parent_task_id = fields.String(validate=TASK_ID_FIELD)
    sla = fields.Nested(SlaSchema)
    # ISO 8601; a deadline without an offset is read as UTC, like every time we show.
    sla_deadline = UtcDeadline()
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
        fields.String(validate=TASK_ID_FIELD), validate=validate.Length(max=MAX_DEPENDENCIES)
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
    decided_at = Timestamp(required=True)


class TaskSchema(Schema):
    """A task as stored, every field present (null when unset)."""

    task_id = fields.String(required=True)
    type = fields.String(required=True)
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    source = fields.String(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    payload = JsonObject()
    metadata = JsonObject()
    trace_id = fields.String(allow_none=True)
    assigned_to = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = Timestamp(allow_none=True)
    updated_at = Timestamp(allow_none=True)
    started_at = Timestamp(allow_none=True)
    completed_at = Timestamp(allow_none=True)
    sla = fields.Nested(SlaOutSchema, allow_none=True)
    parent_task_id = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    retry_count = fields.Integer()
    max_retries = fields.Integer()
    approval_id = fields.String(allow_none=True)
    claimed_by = fields.String(allow_none=True)
    lease_expires_at = Timestamp(allow_none=True)
    approval = fields.Nested(
        ReceiptSchema,
        allow_none=True,
        metadata={"description": "The approval receipt, once people approved the task"},
    )
    lease_token = fields.Integer(allow_none=True)
    run_at = Timestamp(allow_none=True)
    depends_on = fields.List(fields.String(), allow_none=True)


class TaskCreatedSchema(EnvelopeSchema):
    """The created task, and its approval id when it waits at the gate."""

    task_id = fields.String(required=True)
    message = fields.String(required=True)
    task = fields.Nested(TaskSchema, required=True)
    approval_id = fields.String()


class TaskEnvelopeSchema(EnvelopeSchema):
    """One task."""

    task_id = fields.String(required=True)
    task = fields.Nested(TaskSchema, required=True)
    message = fields.String()
    lease_token = fields.Integer(metadata={"description": "Claim only: this lease's token"})


class TaskListQuerySchema(StrictSchema):
    """Filters, page size and cursor of a listing (newest first)."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    type = fields.String(validate=TASK_TYPE_FIELD)
    assigned_to = fields.String(validate=AGENT_FIELD)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    cursor = fields.String(validate=validate.Length(min=1, max=64))


class TaskListSchema(ListEnvelopeSchema):
    """One page of tasks and the cursor of the next (null at the end)."""

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

    agent = fields.String(required=True, validate=AGENT_FIELD)
    lease_seconds = fields.Integer(strict=True, validate=validate.Range(min=1, max=43200))


class HeartbeatSchema(StrictSchema):
    """A new lease length; by default the one the claim chose."""

    lease_seconds = fields.Integer(strict=True, validate=validate.Range(min=1, max=43200))
    lease_token = fields.Integer(**_LEASE_TOKEN)
