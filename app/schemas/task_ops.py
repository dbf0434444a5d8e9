"""Requests and answers of the task operations past the basics: explain and redrive."""

from __future__ import annotations

from marshmallow import fields, validate

from app.domain.model import RETRYABLE_STATUSES, STATUSES
from app.schemas.common import (
    AGENT_FIELD,
    TASK_ID_EXAMPLE,
    TASK_TYPE_FIELD,
    Schema,
    StrictSchema,
    describe,
)
from app.schemas.envelopes import ListEnvelopeSchema


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
            "escalated, escalation, payload_version, payload_sha256), dependencies "
            "(unfinished: task_id and status of each), schedule (run_at), agent (agent, "
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


class RedriveSchema(StrictSchema):
    """Which dead letters to send back to their queues, oldest first."""

    status = fields.String(required=True, validate=validate.OneOf(RETRYABLE_STATUSES))
    type = fields.String(validate=TASK_TYPE_FIELD)
    assigned_to = fields.String(validate=AGENT_FIELD)
    limit = fields.Integer(strict=True, load_default=1000, validate=validate.Range(min=1, max=1000))


class RedriveResultSchema(ListEnvelopeSchema):
    """How many tasks went back to their queues, and which."""

    task_ids = fields.List(fields.String(), required=True)


describe(
    ExplanationSchema,
    task_id=("The task's id", TASK_ID_EXAMPLE),
    status="The task's status now",
    summary="One sentence a person can read on a phone",
)
describe(
    RedriveSchema,
    status=("Which dead letters: failed or cancelled", "failed"),
    type="Only tasks of this type",
    assigned_to="Only tasks of this agent",
    limit=("At most this many, oldest first", 100),
)
describe(
    RedriveResultSchema,
    task_ids="The tasks sent back to their queues, oldest first",
)
