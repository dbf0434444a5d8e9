"""The task store: create, read, list, claim, heartbeat and move tasks, one script each."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.domain import approval_policy, ids, policy
from app.domain.keys import Keys
from app.domain.records import task_record
from app.domain.scripts import Scripts, rows
from app.domain.task_fields import decode_cursor, encode_cursor, fingerprint, stored_fields
from app.errors import (
    MEMORY_RETRY_AFTER,
    Conflict,
    Forbidden,
    NotFound,
    Unavailable,
    ValidationFailed,
)

# Index entries one listing call examines at most. One filter reads its own index, where
# every entry matches; several filters read the smallest and check the rest, and a rare
# combination then answers a short page with a cursor rather than hold Redis for long
# (1,000 rows are a few milliseconds of the primary's one thread).
LIST_SCAN_BUDGET = 1000
REDRIVE_SCAN_BUDGET = 20000
# Retry-After of a 204 from claim: an idle queue is polled at most this often (sooner when
# a scheduled task comes due first); an agent at its concurrency cap may look again in
# a second, when one of its leases may have ended.
IDLE_RETRY_AFTER = 5
CAPPED_RETRY_AFTER = 1


@dataclass(frozen=True)
class Created:
    """The outcome of a create: the task as first stored (as it is now when the script
    call was sent twice: create_task.lua, 'resent'), and whether this was a replay of an
    Idempotency-Key."""

    task: dict
    replayed: bool


@dataclass(frozen=True)
class Claimed:
    """The outcome of a claim: the task (None when nothing was handed out) and, then, the
    seconds the claimant should wait before asking again."""

    task: dict | None
    retry_after: int = 0


class TaskStore:
    """Tasks in Redis; every change is one named script (see lua/)."""

    def __init__(self, scripts: Scripts, settings: Settings):
        self.scripts = scripts
        self.settings = settings
        self.keys = Keys(settings.queue_prefix)

    def create(
        self,
        request: dict,
        principal: str,
        idempotency_key: str | None = None,
        act: tuple[str, ...] = (),
    ) -> Created:
        """Store and route a validated create request; gated tasks open an approval.

        `act` is the principal's delegation chain: the approval keeps every identity in it.
        """
        task_id = ids.new_task_id()
        fields, sla_target_ms = stored_fields(request, task_id, principal, self.settings)
        gate = approval_policy.gate(
            request,
            self.settings.approval_policy,
            self.settings.approver_role,
            policy.approval_reason(request, self.settings),
        )
        if gate:
            gate |= {
                "approval_id": ids.approval_id_for(task_id),
                "requested_by": principal,
                "requester_identities": policy.identities(principal, act),
                "requested_by_act": list(act) or None,
            }
        reply = self.scripts.create_task(
            task=fields,
            approval=gate,
            idempotency_key=(
                self.keys.idempotency(principal, idempotency_key) if idempotency_key else None
            ),
            fingerprint=fingerprint(request) if idempotency_key else None,
            # Without a deadline the script sets one: created_at (Redis' clock) + target.
            sla_target_ms=sla_target_ms,
            run_at_ms=int(request["run_at"].timestamp() * 1000) if request.get("run_at") else None,
            delay_ms=request["delay_seconds"] * 1000 if "delay_seconds" in request else None,
            # Each dependency once, in the order given.
            depends_on=list(dict.fromkeys(request["depends_on"]))
            if request.get("depends_on")
            else None,
        )
        return Created(_task(reply), replayed=reply["outcome"] == "replay")

    def get(self, task_id: str) -> dict:
        """One task as of now; 404 when unknown or expired."""
        return _task(self.scripts.get_task(task_id=ids.check_task_id(task_id)))

    def list(self, query: dict):
        """One page, newest first, for a validated list query, and the next page's cursor."""
        cursor = query.get("cursor")
        reply = self.scripts.list_tasks(
            after_seq=decode_cursor(cursor) if cursor else None,
            limit=query["limit"],
            status=query.get("status") or None,
            task_type=query.get("type") or None,
            assigned_to=query.get("assigned_to") or None,
            scan_budget=LIST_SCAN_BUDGET,
        )
        tasks = [task_record(task) for task in rows(reply["tasks"])]
        return tasks, encode_cursor(reply.get("next_seq"))

    def claim(
        self,
        agent: str,
        principal: str,
        lease_seconds: int | None = None,
        scope: frozenset[str] = frozenset(),
    ) -> Claimed:
        """Hand the agent's best ready task to the caller with a lease and a fencing token.

        Nothing when the queue is empty or the agent holds its ORCHESTRATOR_AGENT_CONCURRENCY
        cap of leases; then `retry_after` says when to ask again. A caller scoped to some
        agents (`scope`) claims only from their queues: 403.
        """
        if scope and agent not in scope:
            raise Forbidden(_out_of_scope(scope))
        reply = self.scripts.claim_task(
            agent=agent,
            lease_ms=(lease_seconds or self.settings.lease_seconds) * 1000,
            principal=principal,
        )
        outcome = reply["outcome"]
        if outcome == "capped":
            return Claimed(None, CAPPED_RETRY_AFTER)
        if outcome == "empty":
            due_ms = reply.get("next_due_ms")
            wait = IDLE_RETRY_AFTER if due_ms is None else -(-int(due_ms) // 1000)
            return Claimed(None, min(IDLE_RETRY_AFTER, max(1, wait)))
        return Claimed(_task(reply))

    def heartbeat(
        self,
        task_id: str,
        principal: str,
        lease_seconds: int | None = None,
        lease_token: int | None = None,
    ) -> dict:
        """Extend the lease of a task the caller claimed (by the claim's lease by default)."""
        reply = self.scripts.heartbeat_task(
            task_id=ids.check_task_id(task_id),
            principal=principal,
            lease_ms=lease_seconds * 1000 if lease_seconds else None,
            lease_token=lease_token,
        )
        return _task(reply, "heartbeat")

    def set_status(
        self,
        task_id: str,
        status: str,
        principal: str,
        error: str | None = None,
        *,
        for_any_holder: bool = False,
        scope: frozenset[str] = frozenset(),
        lease_token: int | None = None,
    ) -> dict:
        """Apply one transition of the state machine (a cancel too); 409 when not allowed.

        Completing or failing a running task is for the principal holding it (or, with
        `for_any_holder`, an admin): 403 otherwise. A `lease_token` that is not the current
        lease's is 409 "lease lost".
        """
        reply = self.scripts.set_task_status(
            task_id=ids.check_task_id(task_id),
            status=status,
            principal=principal,
            error=error or None,
            for_any_holder=for_any_holder,
            agents=sorted(scope) or None,
            lease_token=lease_token,
        )
        if reply["outcome"] == "out_of_scope":
            raise Forbidden(_out_of_scope(scope))
        return _task(reply, status)

    def retry(self, task_id: str) -> dict:
        """A failed or cancelled task back to its agent's queue, or to what it still waits
        for (lua/retry_task.lua); same id, retry_count 0."""
        return _task(self.scripts.retry_task(task_id=ids.check_task_id(task_id)), "retry")

    def redrive(
        self, status: str, *, task_type: str | None, assigned_to: str | None, limit: int
    ) -> list[str]:
        """Retry the matching failed or cancelled tasks, oldest first; their ids."""
        reply = self.scripts.redrive_tasks(
            status=status,
            task_type=task_type or None,
            assigned_to=assigned_to or None,
            limit=limit,
            scan_budget=REDRIVE_SCAN_BUDGET,
        )
        return rows(reply["task_ids"])

    def sweep(self, budget: int = 1000) -> int:
        """Apply what fell due; returns how much is still due."""
        return int(self.scripts.sweep(budget=budget)["still_due"])


def _out_of_scope(scope: frozenset[str]) -> str:
    return f"This API key acts only for the agents {', '.join(sorted(scope))}"


def _task(reply: dict, wanted: str = "") -> dict:
    """The task a script answered with, or the error its outcome stands for.

    `wanted` is the refused action: "heartbeat" or the status asked for.
    """
    if wanted == "heartbeat":
        action = "extend its lease"
        holder_only = "Only the principal that claimed this task may extend its lease"
    elif wanted == "retry":
        action = "retry it (only failed or cancelled tasks are retried)"
        holder_only = ""
    else:
        action = f"move it to {wanted}"
        holder_only = "This task is running under another principal's lease"
    outcome = reply["outcome"]
    if outcome == "not_found":
        raise NotFound("Task not found")
    if outcome == "conflict":
        current = reply["status"]
        raise Conflict(f"Task is {current}; cannot {action}", extra={"current_status": current})
    if outcome == "lease_lost":
        raise Conflict("lease lost", extra={"current_status": reply["status"]})
    if outcome == "not_approved":
        raise Conflict(
            "This task never passed its approval gate; create a new task instead",
            extra={"current_status": reply["status"]},
        )
    if outcome == "capped":
        raise Conflict(
            f"{reply['agent']} already holds {reply['cap']} leases, its "
            "ORCHESTRATOR_AGENT_CONCURRENCY cap; start this task when one ends",
            extra={"current_status": reply["status"]},
        )
    if outcome == "dependency_ended":
        raise Conflict(
            f"Its dependency {reply['dependency']} is {reply['dependency_status']}; "
            "retry that task first",
            extra={"current_status": reply["status"]},
        )
    if outcome == "invalid":
        raise ValidationFailed("Validation failed", errors={reply["field"]: [reply["message"]]})
    if outcome == "forbidden":
        raise Forbidden(holder_only)
    if outcome == "memory_high":
        raise Unavailable(
            "Redis memory is above its high watermark; new tasks are refused until "
            "agents drain the queues",
            headers={"Retry-After": MEMORY_RETRY_AFTER},
        )
    if outcome == "mismatch":
        raise ValidationFailed(
            "Idempotency-Key was already used with a different request body",
            errors={"Idempotency-Key": ["Reused with a different body."]},
        )
    return task_record(reply["task"])
