"""The task model's vocabulary, defined once: states, moves, priorities, types and routes.

Python reads these names directly; the Lua scripts get them as generated constants
(scripts.py writes them into the shared prelude), so neither side can drift.
"""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

# Task states, in the order a task usually meets them: blocked on its dependencies, then
# the gate, then its run time, then its agent's queue.
STATUSES = (
    "blocked",
    "awaiting_approval",
    "scheduled",
    "assigned",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
)
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# Terminal states an admin may send back to the queue (retry, redrive): the dead letters.
RETRYABLE_STATUSES = ("failed", "cancelled")

# The moves a client may ask for (PATCH /tasks/<id>/status, cancel). Leaving
# awaiting_approval any other way takes a decision on its approval, and a task goes
# back to assigned only when its lease expires: the scripts make those moves themselves.
CLIENT_MOVES = MappingProxyType(
    {
        "blocked": frozenset({"cancelled"}),
        "awaiting_approval": frozenset({"cancelled"}),
        "scheduled": frozenset({"cancelled"}),
        "assigned": frozenset({"in_progress", "completed", "failed", "cancelled"}),
        "in_progress": frozenset({"completed", "failed", "cancelled"}),
    }
)

APPROVAL_STATUSES = ("pending", "approved", "rejected", "timeout")

# The source the service's own events carry (clients may not publish under it). Their
# stream entries store it as '' (lib.lua, emit), which no client's event can have.
SERVICE_SOURCE = "orchestrator"

# Task priorities, most urgent first; an event's priority is named after its task's.
PRIORITIES = ("P0", "P1", "P2", "P3")
DEFAULT_PRIORITY = "P2"
EVENT_PRIORITIES = MappingProxyType({"P0": "critical", "P1": "high", "P2": "medium", "P3": "low"})
DEFAULT_EVENT_PRIORITY = EVENT_PRIORITIES[DEFAULT_PRIORITY]
# A task.created payload after its task_id, in the order the service writes it. Its
# entry's `data` holds these values as the list "c", and no priority: the envelope's is
# its task's (EVENT_PRIORITIES); events.envelope_of restores both.
CREATED_PAYLOAD = ("assigned_to", "type", "priority", "created_by")

# How far ahead a task may be scheduled (run_at, delay_seconds) and how many tasks it may
# wait for (depends_on).
MAX_SCHEDULE_SECONDS = 30 * 24 * 3600
MAX_DEPENDENCIES = 50

# Attempts after the first before a task whose leases keep expiring is failed.
DEFAULT_MAX_RETRIES = 3
MAX_RETRIES_LIMIT = 100

# A task's SLA target by priority when the creator gives no deadline: the deadline is
# then the creation time plus this.
SLA_TARGETS = MappingProxyType(
    {
        "P0": timedelta(hours=1),
        "P1": timedelta(hours=4),
        "P2": timedelta(hours=24),
        "P3": timedelta(hours=72),
    }
)

# Who asked for a task when the creator does not say.
DEFAULT_SOURCE = "api"
# A task's hash leaves out fields at these values, trace_id when it is the task's own id,
# updated_at while it is created_at (the same millisecond: a task not changed since), and
# sla when it is its priority's default (SLA_TARGETS from the creation time): every
# stored task would repeat them (Redis memory). records.task_record restores them;
# scripts read a missing retry_count or max_retries as these, and write no updated_at
# in a task's creation millisecond (lib.lua, touched).
UNSTORED_DEFAULTS = MappingProxyType(
    {
        "source": DEFAULT_SOURCE,
        "metadata": "{}",
        "retry_count": "0",
        "max_retries": str(DEFAULT_MAX_RETRIES),
    }
)

# The built-in routing table: task type -> the agent whose queue it joins
# (ORCHESTRATOR_ROUTING_RULES may point a type elsewhere).
DEFAULT_ROUTES = MappingProxyType(
    {
        **dict.fromkeys(("bugfix", "feature", "refactor", "investigate"), "dev_agent"),
        **dict.fromkeys(
            ("deploy", "deployment", "monitor", "monitoring", "alert", "incident"), "ops_agent"
        ),
        **dict.fromkeys(
            ("faq", "faq_update", "kb_update", "documentation", "knowledge_sync"), "faq_agent"
        ),
    }
)
TASK_TYPES = tuple(DEFAULT_ROUTES)

# The default human-in-the-loop gate (ORCHESTRATOR_HITL_PRIORITIES / _TASK_TYPES).
DEFAULT_GATED_PRIORITIES = frozenset({"P0", "P1"})
DEFAULT_GATED_TYPES = frozenset({"deploy", "deployment", "feature", "refactor"})
# payload.environment values that let a gated type skip approval; anything else is gated.
DEFAULT_UNGATED_ENVIRONMENTS = frozenset(
    {"development", "dev", "staging", "test", "testing", "qa", "local"}
)

# Principal roles, weakest first: each may do what the ones before it may.
ROLES = ("user", "agent", "admin")
ROLE_RANK = MappingProxyType({role: rank for rank, role in enumerate(ROLES)})
# What every issued token is (RFC 6750): the token endpoint answers it, its schema
# documents it.
TOKEN_TYPE = "bearer"  # noqa: S105 (a scheme name, not a secret)
