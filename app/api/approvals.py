"""Approvals: the human-in-the-loop gate's pending list, history and decisions."""

from __future__ import annotations

from app import metrics
from app.api import merged
from app.auth import current_principal, require_role
from app.parsing import Blueprint
from app.schemas.approvals import (
    ApprovalConflictSchema,
    ApprovalEnvelopeSchema,
    ApprovalListSchema,
    ApprovalSchema,
    ApproveQuerySchema,
    ApproveSchema,
    HistoryQuerySchema,
    RejectSchema,
)
from app.services import services

blp = Blueprint(
    "approvals",
    __name__,
    url_prefix="/approvals",
    description="Critical tasks wait here for a second principal's decision",
)
_DECIDED = "Already decided or timed out"


def _listing(approvals: list[dict]) -> dict:
    return {"success": True, "count": len(approvals), "approvals": approvals}


@blp.route("/pending", methods=["GET"])
@require_role("user")
@blp.response(200, ApprovalListSchema)
def pending():
    """Approvals waiting for a decision, oldest first."""
    return _listing(services().approvals.pending())


@blp.route("/history", methods=["GET"])
@require_role("user")
@blp.arguments(HistoryQuerySchema(), location="query")
@blp.response(200, ApprovalListSchema)
def history(query):
    """Decided and timed-out approvals, newest first."""
    return _listing(services().approvals.history(query["limit"]))


@blp.route("/<approval_id>", methods=["GET"])
@require_role("user")
@blp.response(200, ApprovalSchema)
def get_approval(approval_id):
    """One approval."""
    return services().approvals.get(approval_id)


def _decide(approval_id: str, body: dict | None, approve: bool):
    body = body or {}
    caller = current_principal()
    approval, task = services().approvals.decide(
        approval_id,
        caller.id,
        caller.role,
        act=caller.act,
        approve=approve,
        reason=body.get("reason"),
        comment=body.get("comment"),
        payload=body.get("payload"),
        expected_sha256=body.get("payload_sha256"),
    )
    verb = approval["status"] if approval["status"] != "pending" else "counted"
    metrics.approval_decided(verb)
    if task:
        metrics.task_moved(task["status"])
    if approval["status"] == "pending":
        message = (
            f"Approval counted: {len(approval['approvals'])} of "
            f"{approval['required_approvals']}; task is still awaiting approval"
        )
    else:
        message = f"Approval {verb}; task is {task['status'] if task else 'gone'}"
    return {"success": True, "approval": approval, "task": task, "message": message}


@blp.route("/<approval_id>/approve", methods=["POST"])
@require_role(
    setting="approver_role",
    forbidden="Four-eyes rule (the task's creator), not among `eligible`, or role too weak",
)
@blp.arguments(ApproveQuerySchema(), location="query", as_kwargs=False)
@blp.arguments(
    ApproveSchema(),
    required=False,
    examples={
        "approve": {"value": {"comment": "Checked the rollout plan"}},
        "approve what I reviewed": {
            "value": {"payload_sha256": "9b1c0a9e2f5d4c3b" * 4, "comment": "LGTM"}
        },
        "approve with edits": {
            "value": {
                "payload": {"environment": "production", "version": "1.4.2", "canary": True},
                "comment": "Ship the patch release, behind a canary",
            }
        },
    },
)
@blp.response(200, ApprovalEnvelopeSchema)
@blp.alt_response(409, schema=ApprovalConflictSchema, description=_DECIDED)
def approve(query, body, approval_id):
    """Approve (optional `comment`); with `payload`, approve with edits.

    The task joins its agent's queue once `required_approvals` distinct eligible
    principals approved its current payload; until then the approval stays pending.
    With `payload` the task's payload is replaced, `payload_version` goes up by one and
    earlier approvals are cleared (this one counts as the first of the new version).
    403: the task's creator (four-eyes rule) or a principal outside `eligible`; 409: the
    approval is closed, this principal already approved this version, or the payload no
    longer has the `payload_sha256` given.
    """
    return _decide(approval_id, merged(query, body), approve=True)


@blp.route("/<approval_id>/reject", methods=["POST"])
@require_role(setting="approver_role", forbidden="Not among `eligible`, or role too weak")
@blp.arguments(RejectSchema(), location="query", as_kwargs=False)
@blp.arguments(
    RejectSchema(),
    required=False,
    example={"reason": "Change freeze until Monday", "comment": "Re-request after the freeze"},
)
@blp.response(200, ApprovalEnvelopeSchema)
@blp.alt_response(409, schema=ApprovalConflictSchema, description=_DECIDED)
def reject(query, body, approval_id):
    """Reject (`reason`, `comment` in the query or body): the task is cancelled.

    One eligible rejection closes the approval. The task's creator may reject it: that
    withdraws the request. `reason` is required (422) when a policy rule gated the task.
    """
    return _decide(approval_id, merged(query, body), approve=False)
