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
        act=caller.act,
        approve=approve,
        reason=body.get("reason"),
        comment=body.get("comment"),
    )
    verb = "approved" if approve else "rejected"
    metrics.approval_decided(verb)
    if task:
        metrics.task_moved(task["status"])
    return {
        "success": True,
        "approval": approval,
        "task": task,
        "message": f"Approval {verb}; task is {task['status'] if task else 'gone'}",
    }


@blp.route("/<approval_id>/approve", methods=["POST"])
@require_role(setting="approver_role", forbidden="Four-eyes rule or role too weak")
@blp.arguments(ApproveSchema(), location="query", as_kwargs=False)
@blp.arguments(ApproveSchema(), required=False)
@blp.response(200, ApprovalEnvelopeSchema)
@blp.alt_response(409, schema=ApprovalConflictSchema, description=_DECIDED)
def approve(query, body, approval_id):
    """Approve (optional `comment`): the task joins its agent's queue.

    The principal that created the task may not approve it (four-eyes rule).
    """
    return _decide(approval_id, merged(query, body), approve=True)


@blp.route("/<approval_id>/reject", methods=["POST"])
@require_role(setting="approver_role")
@blp.arguments(RejectSchema(), location="query", as_kwargs=False)
@blp.arguments(RejectSchema(), required=False)
@blp.response(200, ApprovalEnvelopeSchema)
@blp.alt_response(409, schema=ApprovalConflictSchema, description=_DECIDED)
def reject(query, body, approval_id):
    """Reject (`reason`, `comment` in the query or body): the task is cancelled.

    The task's creator may reject it: that withdraws the request.
    """
    return _decide(approval_id, merged(query, body), approve=False)
