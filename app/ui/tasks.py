"""The task board: a filtered, paged list, one task with its timeline, and the queues."""

from __future__ import annotations

from flask import g, redirect, render_template, request, url_for
from marshmallow import ValidationError

from app import metrics
from app.domain.model import RETRYABLE_STATUSES, STATUSES, TASK_TYPES, TERMINAL_STATUSES
from app.errors import ValidationFailed
from app.schemas.tasks import CancelSchema, TaskListQuerySchema
from app.services import services
from app.ui import bp
from app.ui.session import csrf_token, page

PAGE_SIZE = 25
TIMELINE_LIMIT = 200
FILTERS = ("status", "type", "assigned_to")


@bp.route("/tasks", methods=["GET"])
@page()
def tasks():
    """Tasks, newest first, filtered by status, type and agent, one page at a time."""
    wanted = {name: request.args[name] for name in (*FILTERS, "cursor") if request.args.get(name)}
    try:
        query = TaskListQuerySchema().load({**wanted, "limit": PAGE_SIZE})
    except ValidationError as error:
        raise ValidationFailed(f"Invalid filter: {', '.join(sorted(error.messages))}") from None
    # The API's own call with the same validated query: both filter the same way.
    listed, next_cursor = services().tasks.list(query)
    filters = {name: wanted[name] for name in FILTERS if name in wanted}
    return render_template(
        "ui/tasks.html",
        tasks=listed,
        filters=filters,
        next_url=url_for("ui.tasks", **filters, cursor=next_cursor) if next_cursor else None,
        first_url=url_for("ui.tasks", **filters) if "cursor" in wanted else None,
        statuses=STATUSES,
        task_types=TASK_TYPES,
    )


@bp.route("/tasks/<task_id>", methods=["GET"])
@page()
def task(task_id):
    """One task: its fields, the approval that gated it, and its event timeline."""
    record = services().tasks.get(task_id)
    events, _ = services().events.read(order="asc", task_id=task_id, limit=TIMELINE_LIMIT)
    approval = services().approvals.get(record["approval_id"]) if record["approval_id"] else None
    return render_template(
        "ui/task.html",
        task=record,
        events=events,
        approval=approval,
        explanation=services().explainer.explain(task_id),
        can_cancel=g.ui_principal.at_least("agent") and record["status"] not in TERMINAL_STATUSES,
        # The domain still refuses a task that never passed its gate (a 409 page).
        can_retry=g.ui_principal.at_least("admin") and record["status"] in RETRYABLE_STATUSES,
        csrf=csrf_token(),
        notice=request.args.get("notice"),
    )


@bp.route("/tasks/<task_id>/cancel", methods=["POST"])
@page(role="agent")
def cancel(task_id):
    """Cancel a task that has not finished, with an optional reason (as the API's agent role)."""
    reason = request.form.get("reason", "").strip()
    try:
        body = CancelSchema().load({"reason": reason} if reason else {})
    except ValidationError as error:
        raise ValidationFailed(f"Invalid reason: {error.messages}") from None
    principal = g.ui_principal
    services().tasks.set_status(
        task_id, "cancelled", principal.id, body.get("reason"), scope=principal.agents
    )
    metrics.task_moved("cancelled")
    return redirect(url_for("ui.task", task_id=task_id, notice="cancelled"), code=303)


@bp.route("/tasks/<task_id>/retry", methods=["POST"])
@page(role="admin")
def retry(task_id):
    """Put a failed or cancelled task back in its agent's queue (as the API's admin role)."""
    services().tasks.retry(task_id)
    metrics.task_moved("assigned")
    return redirect(url_for("ui.task", task_id=task_id, notice="retried"), code=303)


@bp.route("/queues", methods=["GET"])
@page()
def queues():
    """Per-agent queue depth and the service's counters."""
    return render_template("ui/queues.html", stats=services().stats.read())
