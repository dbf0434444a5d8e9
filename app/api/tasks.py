"""Tasks: create, list, read, move through the state machine, claim and heartbeat."""

from __future__ import annotations

import re

from flask import request
from flask_smorest import Blueprint

from app import metrics
from app.api import merged
from app.auth import current_principal, require_role
from app.errors import ValidationFailed
from app.schemas.common import ErrorSchema
from app.schemas.tasks import (
    CREATE_EXAMPLE,
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


def _envelope(task: dict, message: str | None = None) -> dict:
    body = {"success": True, "task_id": task["task_id"], "task": task}
    if message:
        body["message"] = message
    return body


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
    created = services().tasks.create(body, current_principal().id, key)
    task = created.task
    if not created.replayed:
        metrics.task_created(task)
    if task["status"] == "awaiting_approval":
        message = f"Task created; awaiting approval {task['approval_id']}"
    else:
        message = f"Task created and assigned to {task['assigned_to']}"
    response = {"success": True, "task_id": task["task_id"], "message": message, "task": task}
    if task["approval_id"]:
        response["approval_id"] = task["approval_id"]
    # Same as url_for("tasks.get_task", ...), without building a URL adapter per request.
    headers = {"Location": f"{request.script_root}/tasks/{task['task_id']}"}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return response, 201, headers


@blp.route("", methods=["GET"])
@require_role("user")
@blp.arguments(TaskListQuerySchema(), location="query")
@blp.response(200, TaskListSchema)
def list_tasks(query):
    """List tasks, newest first, with filters and an opaque cursor."""
    tasks, next_cursor = services().tasks.list(
        limit=query["limit"],
        cursor=query.get("cursor"),
        status=query.get("status"),
        task_type=query.get("type"),
        assigned_to=query.get("assigned_to"),
    )
    return {"success": True, "count": len(tasks), "tasks": tasks, "next_cursor": next_cursor}


@blp.route("/claim", methods=["POST"])
@require_role("agent")
@blp.arguments(ClaimSchema())
@blp.response(200, TaskEnvelopeSchema)
@blp.alt_response(204, description="Nothing is ready for this agent")
def claim_task(body):
    """Atomically take the agent's highest-priority, oldest ready task, with a lease."""
    task = services().tasks.claim(body["agent"], current_principal().id, body.get("lease_seconds"))
    if task is None:
        return "", 204
    metrics.task_moved("in_progress")
    return _envelope(task, f"Task claimed until {task['lease_expires_at']}")


@blp.route("/<task_id>", methods=["GET"])
@require_role("user")
@blp.response(200, TaskEnvelopeSchema)
def get_task(task_id):
    """One task."""
    return _envelope(services().tasks.get(task_id))


@blp.route("/<task_id>/status", methods=["PATCH"])
@require_role("agent")
@blp.arguments(StatusUpdateSchema(), location="query", as_kwargs=False)
@blp.arguments(
    StatusUpdateSchema(), location="json", required=False, example={"status": "completed"}
)
@blp.response(200, TaskEnvelopeSchema)
@blp.alt_response(409, schema=ErrorSchema, description="Transition not allowed")
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
    )
    metrics.task_moved(task["status"])
    return _envelope(task, f"Task is now {task['status']}")


def _task_action(action: str, schema):
    """POST /tasks/<task_id>/<action>: an agent acts on one task, with an optional body."""

    def decorate(view):
        for decorator in reversed(
            (
                blp.route(f"/<task_id>/{action}", methods=["POST"]),
                require_role("agent"),
                blp.arguments(schema, required=False),
                blp.response(200, TaskEnvelopeSchema),
                blp.alt_response(409, schema=ErrorSchema, description="Transition not allowed"),
            )
        ):
            view = decorator(view)
        return view

    return decorate


@_task_action("cancel", CancelSchema())
def cancel_task(body, task_id):
    """Cancel a task that has not finished."""
    task = services().tasks.cancel(task_id, current_principal().id, (body or {}).get("reason"))
    metrics.task_moved("cancelled")
    return _envelope(task, "Task cancelled")


@_task_action("heartbeat", HeartbeatSchema())
def heartbeat(body, task_id):
    """Extend the lease of a task the caller claimed."""
    task = services().tasks.heartbeat(
        task_id, current_principal().id, (body or {}).get("lease_seconds")
    )
    return _envelope(task, f"Lease extended until {task['lease_expires_at']}")
