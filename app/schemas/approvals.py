"""Approval requests and responses."""

from __future__ import annotations

from marshmallow import fields, validate

from app.domain.model import APPROVAL_STATUSES, PRIORITIES
from app.schemas.common import (
    APPROVAL_ID_EXAMPLE,
    TASK_ID_EXAMPLE,
    TIME_EXAMPLE,
    ErrorSchema,
    JsonObject,
    Schema,
    StrictSchema,
    Timestamp,
    describe,
)
from app.schemas.envelopes import EnvelopeSchema, ListEnvelopeSchema
from app.schemas.tasks import TaskSchema


class GivenApprovalSchema(Schema):
    """One principal's approval of the current payload version."""

    by = fields.String(required=True)
    at = Timestamp(required=True)
    comment = fields.String(allow_none=True)
    act = fields.List(fields.String(), allow_none=True)


class ApprovalSchema(Schema):
    """An approval record; approved_by/approved_at mirror decided_by/decided_at when approved."""

    approval_id = fields.String(required=True)
    task_id = fields.String(required=True)
    task_type = fields.String(allow_none=True)
    priority = fields.String(allow_none=True, validate=validate.OneOf(PRIORITIES))
    reason = fields.String(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(APPROVAL_STATUSES))
    requested_by = fields.String(allow_none=True)
    requested_at = Timestamp(allow_none=True)
    expires_at = Timestamp(allow_none=True)
    decided_by = fields.String(allow_none=True)
    decided_at = Timestamp(allow_none=True)
    rejection_reason = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    requested_by_act = fields.List(
        fields.String(),
        allow_none=True,
        metadata={
            "description": "Who minted the requester's token (RFC 8693 act), outermost first"
        },
    )
    decided_by_act = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "Who minted the decider's token (RFC 8693 act), outermost"},
    )
    approved_by = fields.String(allow_none=True, metadata={"deprecated": True})
    approved_at = fields.String(allow_none=True, metadata={"deprecated": True})
    policy = fields.String(
        allow_none=True, metadata={"description": "The policy rule that gated the task"}
    )
    required_approvals = fields.Integer(
        required=True, metadata={"description": "Distinct eligible approvals needed"}
    )
    approvals = fields.List(
        fields.Nested(GivenApprovalSchema),
        required=True,
        metadata={
            "description": "Approvals of the current payload version, oldest first",
            "example": [
                {"by": "apikey:alice", "at": "2026-12-01T09:12:03.120Z", "comment": "LGTM"}
            ],
        },
    )
    eligible = fields.List(
        fields.String(),
        required=True,
        metadata={
            "description": "Who may decide: role:<role> (or higher), group:<name>, principal",
            "example": ["group:sre", "apikey:alice"],
        },
    )
    payload_version = fields.Integer(
        required=True, metadata={"description": "1, plus one per approval with edits"}
    )
    payload_sha256 = fields.String(
        required=True, metadata={"description": "sha256 hex of the canonical payload JSON"}
    )
    escalated = fields.Boolean(
        required=True, metadata={"description": "Whether the timeout escalation happened"}
    )


class ApprovalConflictSchema(ErrorSchema):
    """409 on a decision: the error, plus the approval as it stands now."""

    approval = fields.Nested(ApprovalSchema, required=True)


class ApprovalListSchema(ListEnvelopeSchema):
    """A list of approvals (pending oldest first, history newest first)."""

    approvals = fields.List(fields.Nested(ApprovalSchema), required=True)


class ApprovalEnvelopeSchema(EnvelopeSchema):
    """The decided approval and the task it released or cancelled."""

    approval = fields.Nested(ApprovalSchema, required=True)
    task = fields.Nested(TaskSchema, allow_none=True)
    message = fields.String()


class HistoryQuerySchema(StrictSchema):
    """How many history entries to return (capped at ORCHESTRATOR_MAX_APPROVAL_HISTORY)."""

    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=100000))


_COMMENT = fields.String(
    validate=validate.Length(max=1000),
    metadata={"description": "Stored with the decision"},
)


class ApproveQuerySchema(StrictSchema):
    """An optional comment stored with the approval."""

    comment = _COMMENT


class ApproveSchema(ApproveQuerySchema):
    """A comment, an edited payload, and the payload hash the approver reviewed."""

    payload = JsonObject(
        metadata={
            "description": "Approve with edits: replaces the task's payload, restarts the "
            "count (this approval is the first of the new version)",
            "example": {"environment": "production", "replicas": 3},
        }
    )
    payload_sha256 = fields.String(
        validate=validate.Regexp(r"^[0-9a-f]{64}$"),
        metadata={"description": "Approve only if the current payload still has this hash (409)"},
    )


class RejectSchema(ApproveQuerySchema):
    """Why the task is rejected (becomes its error) and an optional comment."""

    reason = fields.String(
        validate=validate.Length(min=1, max=1000),
        metadata={
            "description": "Why; becomes rejection_reason and the task's error. Required "
            "when a policy rule gated the task"
        },
    )


describe(
    ApprovalSchema,
    approval_id=("The approval's id (apr- and its task's id)", APPROVAL_ID_EXAMPLE),
    task_id=("The task it holds", TASK_ID_EXAMPLE),
    task_type=("The task's type", "deploy"),
    priority=("The task's priority", "P2"),
    reason=("Why the gate holds it", "deploy to production needs approval"),
    status=("pending, approved, rejected or timeout", "pending"),
    requested_by=("Principal that created the task (may not decide it)", "apikey:agent"),
    requested_at=("When it was requested (UTC)", TIME_EXAMPLE),
    expires_at=("When it times out and cancels its task (UTC)", "2026-01-06T10:15:00.000Z"),
    decided_by=("Principal that approved or rejected it", None),
    decided_at=("When it was decided", None),
    rejection_reason=("Why it was rejected", None),
    comment=("Comment given with the decision", None),
    approved_by="Deprecated: decided_by when approved",
    approved_at="Deprecated: decided_at when approved",
)
describe(
    ApprovalConflictSchema,
    approval="The approval as it stands now",
)
describe(ApprovalListSchema, approvals="The approvals")
describe(
    ApprovalEnvelopeSchema,
    approval="The decided approval",
    task="The task it released (now assigned) or cancelled",
    message=("What happened", "Approval approved; task assigned to ops_agent"),
)
describe(HistoryQuerySchema, limit="How many entries, newest first")
describe(ApproveSchema, comment=("Stored in the approval record", "Checked the diff; go ahead"))
describe(
    RejectSchema,
    reason=("Why; becomes rejection_reason and the task's error", "Not during the freeze"),
)
describe(
    GivenApprovalSchema,
    by="Who approved",
    at="When (ISO 8601 UTC)",
    comment="What they said, if anything",
    act="Who minted the approver's token (RFC 8693 act), outermost first; null when direct",
)
