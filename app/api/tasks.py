"""Tasks: create, list, read, move through the state machine, claim and heartbeat."""

from __future__ import annotations

import re

from flask import Response, g, request

from app import metrics
from app.api import merged
from app.auth import current_principal, require_role
from app.dumping import respond
from app.errors import ValidationFailed
from app.parsing import Blueprint
from app.schemas.common import ErrorSchema
from app.schemas.task_docs import CREATE_EXAMPLE
from app.schemas.task_ops import ExplanationSchema, RedriveResultSchema, RedriveSchema
from app.schemas.tasks import (
    CancelSchema,
    ClaimSchema,
    HeartbeatSchema,
    StatusUpdateSchema,
    TaskCreatedSchema,
    TaskCreateSchema,
    TaskEnvelopeSchema,
    TaskListQuerySchema,
    TaskListSchema,
)
from app.services import services

blp = Blueprint("tasks", __name__, url_prefix="/tasks", description="Create, route and run tasks")

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_LEASE_TOKEN_HEADER = {
    "in": "header",
    "name": "X-Lease-Token",
    "required": False,
    "schema": {"type": "integer", "minimum": 1},
    "description": "The lease_token claim returned; a stale one is 409 lease lost",
}
_WAITING = {"blocked": "waiting for its dependencies", "scheduled": "scheduled for {run_at}"}


def _lease_token(values: dict | None) -> int | None:
    """The fencing token: `lease_token` in the body or query, else X-Lease-Token."""
    if values and "lease_token" in values:
        return values["lease_token"]
    header = request.headers.get("X-Lease-Token")
    if header is None:
        return None
    if not header.isdigit() or not 0 < int(header) < 2**53:
        raise ValidationFailed(
            "Invalid X-Lease-Token", errors={"X-Lease-Token": ["A lease_token from claim."]}
        )
    return int(header)


def _envelope(task: dict, message: str | None = None, **extra) -> Response:
    """A TaskEnvelopeSchema answer, dumped by its plan (app/dumping.py)."""
    body = {"success": True, "task_id": task["task_id"], "task": task}
    if message:
        body["message"] = message
    return respond(TaskEnvelopeSchema, {**body, **extra})


@blp.route("", methods=["POST"])
@blp.doc(
    parameters=[
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": False,
            "schema": {"type": "string", "pattern": "^[!-~]{1,255}$", "maxLength": 255},
            "description": (
                "Repeat a create safely for 24 h; a different body under the same key is 422"
            ),
        }
    ],
)
@require_role("agent")
@blp.arguments(TaskCreateSchema(), example=CREATE_EXAMPLE)
@blp.response(201, TaskCreatedSchema)
def create_task(body):
    """Create a task and route it to its agent (critical ones wait for approval)."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise ValidationFailed(
            "Invalid Idempotency-Key",
            errors={"Idempotency-Key": ["1-255 printable ASCII characters."]},
        )
    caller = current_principal()
    created = services().tasks.create(body, caller.id, key, act=caller.act)
    task = created.task
    if not created.replayed:
        metrics.task_created(task)
    if task["status"] == "awaiting_approval":
        message = f"Task created; awaiting approval {task['approval_id']}"
    elif task["status"] in _WAITING:
        message = "Task created; " + _WAITING[task["status"]].format(run_at=task["run_at"])
    elif task["status"] == "cancelled":
        message = f"Task created and cancelled: {task['error']}"
    else:
        message = f"Task created and assigned to {task['assigned_to']}"
    response = {"success": True, "task_id": task["task_id"], "message": message, "task": task}
    if task["approval_id"]:
        response["approval_id"] = task["approval_id"]
    # Same as url_for("tasks.get_task", ...), without building a URL adapter per request.
    headers = {"Location": f"{request.script_root}/tasks/{task['task_id']}"}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return respond(TaskCreatedSchema, response), 201, headers


@blp.route("", methods=["GET"])
@require_role("user")
@blp.arguments(TaskListQuerySchema(), location="query")
@blp.response(200, TaskListSchema)
def list_tasks(query):
    """List tasks, newest first, with filters and an opaque cursor."""
    tasks, next_cursor = services().tasks.list(query)
    body = {"success": True, "count": len(tasks), "tasks": tasks, "next_cursor": next_cursor}
    return respond(TaskListSchema, body)


@blp.route("/claim", methods=["POST"])
@require_role("agent")
@blp.arguments(ClaimSchema())
@blp.response(200, TaskEnvelopeSchema)
@blp.alt_response(
    204,
    description="Nothing is ready for this agent, or it holds its concurrency cap of leases; "
    "Retry-After says when to ask again",
    headers={"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
)
def claim_task(body):
    """Atomically take the agent's highest-priority, oldest ready task, with a lease.

    The answer's `lease_token` fences the lease: send it with heartbeat, status and cancel.
    """
    caller = current_principal()
    claimed = services().tasks.claim(
        body["agent"], caller.id, body.get("lease_seconds"), scope=caller.agents
    )
    task = claimed.task
    if task is None:
        # Kept past the limiter, which would replace it with its own window's reset.
        g.retry_after = claimed.retry_after
        return "", 204, {"Retry-After": str(claimed.retry_after)}
    metrics.task_moved("in_progress")
    message = f"Task claimed until {task['lease_expires_at']}"
    return _envelope(task, message, lease_token=task["lease_token"])


@blp.route("/<task_id>", methods=["GET"])
@require_role("user")
@blp.response(200, TaskEnvelopeSchema)
def get_task(task_id):
    """One task."""
    return _envelope(services().tasks.get(task_id))


@blp.route("/<task_id>/explain", methods=["GET"])
@require_role("user")
@blp.response(200, ExplanationSchema)
def explain_task(task_id):
    """Why isn't my task running? What it waits for, in one sentence, and the facts.

    `waiting_for` is `approval` (received / required, who can still act, expiry),
    `agent` (its queue position and how many are ahead), `lease` (holder and expiry), or
    null once the task ended (`details.outcome`).
    """
    return services().explainer.explain(task_id)


@blp.route("/<task_id>/status", methods=["PATCH"])
@require_role("agent")
@blp.arguments(StatusUpdateSchema(), location="query", as_kwargs=False)
@blp.arguments(
    StatusUpdateSchema(), location="json", required=False, example={"status": "completed"}
)
@blp.response(200, TaskEnvelopeSchema)
@blp.alt_response(409, schema=ErrorSchema, description="Transition not allowed, or lease lost")
@blp.doc(parameters=[_LEASE_TOKEN_HEADER])
def update_status(query, body, task_id):
    """Move a task through the state machine (`status`, `error` in the query or body)."""
    update = merged(query, body)
    if "status" not in update:
        raise ValidationFailed(
            "Validation failed", errors={"status": ["Missing data for required field."]}
        )
    caller = current_principal()
    task = services().tasks.set_status(
        task_id,
        update["status"],
        caller.id,
        update.get("error"),
        for_any_holder=caller.role == "admin",
        scope=caller.agents,
        lease_token=_lease_token(update),
    )
    metrics.task_moved(task["status"])
    return _envelope(task, f"Task is now {task['status']}")


def _task_action(action: str, schema, role: str = "agent"):
    """POST /tasks/<task_id>/<action>: a principal acts on one task, with an optional body."""

    def decorate(view):
        for decorator in reversed(
            (
                blp.route(f"/<task_id>/{action}", methods=["POST"]),
                require_role(role),
                *([blp.arguments(schema, required=False)] if schema else []),
                blp.response(200, TaskEnvelopeSchema),
                blp.alt_response(
                    409, schema=ErrorSchema, description="Transition not allowed, or lease lost"
                ),
            )
        ):
            view = decorator(view)
        return view

    return decorate


@blp.doc(parameters=[_LEASE_TOKEN_HEADER])
@_task_action("cancel", CancelSchema())
def cancel_task(body, task_id):
    """Cancel a task that has not finished (blocked, scheduled and gated ones too)."""
    caller = current_principal()
    # The reason becomes the task's error, as a failure's does.
    task = services().tasks.set_status(
        task_id,
        "cancelled",
        caller.id,
        (body or {}).get("reason"),
        scope=caller.agents,
        lease_token=_lease_token(body),
    )
    metrics.task_moved("cancelled")
    return _envelope(task, "Task cancelled")


@blp.doc(parameters=[_LEASE_TOKEN_HEADER])
@_task_action("heartbeat", HeartbeatSchema())
def heartbeat(body, task_id):
    """Extend the lease of a task the caller claimed."""
    task = services().tasks.heartbeat(
        task_id, current_principal().id, (body or {}).get("lease_seconds"), _lease_token(body)
    )
    return _envelope(task, f"Lease extended until {task['lease_expires_at']}")


@_task_action("retry", None, role="admin")
def retry_task(task_id):
    """Put a failed or cancelled task back in its agent's queue (same id, retry_count 0).

    A task that still waits goes back to waiting first: `blocked` while a dependency has
    not completed, `scheduled` while its `run_at` is ahead. 409: the task never passed its
    approval gate, or a dependency failed or was cancelled (retry that one first).
    """
    task = services().tasks.retry(task_id)
    metrics.task_moved("assigned")
    return _envelope(task, f"Task retried; queued for {task['assigned_to']}")


@blp.route("/redrive", methods=["POST"])
@require_role("admin")
@blp.arguments(RedriveSchema())
@blp.response(200, RedriveResultSchema)
def redrive(body):
    """Retry the failed (or cancelled) tasks that match, oldest first, up to `limit`."""
    task_ids = services().tasks.redrive(
        body["status"],
        task_type=body.get("type"),
        assigned_to=body.get("assigned_to"),
        limit=body["limit"],
    )
    for _ in task_ids:
        metrics.task_moved("assigned")
    return {"success": True, "count": len(task_ids), "task_ids": task_ids}
