"""Descriptions and examples of the task schemas, for the OpenAPI document.

Kept beside the schemas (app/schemas/tasks.py) so their field declarations stay short;
importing this module (app/api/tasks.py does) attaches them before the spec is built.
"""

from __future__ import annotations

from app.schemas import tasks
from app.schemas.common import APPROVAL_ID_EXAMPLE, TASK_ID_EXAMPLE, TIME_EXAMPLE, describe

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
    tasks.SlaSchema,
    target=("Free-text target, e.g. a duration", "4h"),
    deadline=("When the task must be done (ISO 8601; no offset = UTC)", "2030-01-01T12:00:00Z"),
)
describe(
    tasks.SlaOutSchema,
    target=("Free-text target", "4h"),
    deadline=("Deadline, ISO 8601 UTC", TIME_EXAMPLE),
)
# Examples on the fields show in Swagger UI's model view (ReDoc shows only the request
# sample); what "Try it out" sends is CREATE_EXAMPLE.
describe(
    tasks.TaskCreateSchema,
    type=("What kind of work it is; picks the agent (see the routing table)", "bugfix"),
    priority=("P0 (most urgent) to P3; P0 and P1 wait for approval by default", "P2"),
    source=("Who or what asked for it (free text, default `api`)", "api"),
    payload=("The work itself, any JSON object the agent understands", CREATE_EXAMPLE["payload"]),
    metadata=(
        "Extra JSON for people and tools; never read by the service",
        CREATE_EXAMPLE["metadata"],
    ),
    trace_id=(
        "Correlates the task's events with your own traces (default: the task's id)",
        "req-7f3a9c",
    ),
    parent_task_id=(
        "An existing task this one belongs to (404-free: it must exist, else 422)",
        TASK_ID_EXAMPLE,
    ),
    sla=_SLA,
    sla_deadline=(
        "Shorthand for `sla.deadline` (ISO 8601; no offset = UTC); give one of the two",
        "2030-01-01T12:00:00Z",
    ),
    max_retries=("How many times an expired lease may requeue it before it fails", 3),
    requires_approval=("Hold it for a human approval even if the policy would not", False),
    run_at=("Run no earlier than this (ISO 8601, at most 30 days ahead)", TIME_EXAMPLE),
    delay_seconds=("Or run this many seconds from now", 600),
    depends_on=("Task ids that must complete first (up to 50)", [TASK_ID_EXAMPLE]),
)
describe(
    tasks.TaskSchema,
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
    started_at=("When its latest run started: the last claim (or move to in_progress)", None),
    completed_at=("When it reached a terminal state", None),
    sla=("Service-level target and deadline", {"target": "4h", "deadline": None}),
    parent_task_id=("The task it belongs to", None),
    error=("Why it failed or was cancelled", None),
    retry_count=("Leases that expired so far", 0),
    max_retries=("Expired leases allowed before it fails", 3),
    approval_id=("Its approval, when it was gated", None),
    claimed_by=("Principal holding its lease", None),
    lease_expires_at=("When the lease runs out unless renewed by a heartbeat", None),
    lease_token=("The current lease's fencing token (grows with every claim)", None),
    run_at=("When a scheduled task runs", None),
    depends_on=("Tasks that must complete before this one runs", None),
)
describe(
    tasks.TaskCreatedSchema,
    task_id=("The new task's id (also in Location)", TASK_ID_EXAMPLE),
    message=("What happened", "Task created and assigned to dev_agent"),
    task="The stored task",
    approval_id="Present when the task waits for approval: decide it at /approvals/{id}",
)
describe(
    tasks.TaskEnvelopeSchema,
    task_id=("The task's id", TASK_ID_EXAMPLE),
    task="The task",
    message=("What happened, for changes", "Task claimed"),
)
describe(
    tasks.TaskListQuerySchema,
    status="Only tasks in this state",
    type="Only tasks of this type",
    assigned_to="Only tasks routed to this agent",
    limit="Page size (1-1000)",
    cursor="`next_cursor` of the previous page",
)
describe(
    tasks.TaskListSchema,
    tasks="Newest first",
    next_cursor=("Pass as `cursor` for the next page; null on the last page", None),
)
describe(
    tasks.StatusUpdateSchema,
    status=("The state to move to (the state machine decides)", "completed"),
    error="Why, when moving to failed",
)
describe(
    tasks.CancelSchema, reason=("Why (stored as the task's error)", "Duplicate of another task")
)
describe(
    tasks.ClaimSchema,
    agent=("The agent whose queue to take from", "dev_agent"),
    lease_seconds=(
        "How long to hold it without a heartbeat (default ORCHESTRATOR_LEASE_SECONDS)",
        300,
    ),
)
describe(tasks.HeartbeatSchema, lease_seconds=("New lease length (default: the claim's)", 300))
describe(
    tasks.ReceiptSchema,
    approval_id=("The approval that released the task", APPROVAL_ID_EXAMPLE),
    approved_by="Who approved the payload that runs",
    decided_at=("When the last approval needed arrived", TIME_EXAMPLE),
)
