"""The task store: create, read, list, claim, heartbeat and move tasks, one script each."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.config import Settings
from app.domain import approval_policy, ids, policy, routing
from app.domain.keys import Keys
from app.domain.model import DEFAULT_MAX_RETRIES
from app.domain.records import task_record
from app.domain.scripts import Scripts, rows
from app.errors import (
    MEMORY_RETRY_AFTER,
    Conflict,
    Forbidden,
    NotFound,
    Unavailable,
    ValidationFailed,
)

# Default SLA by priority when the creator gives no deadline.
SLA_TARGETS = {
    "P0": timedelta(hours=1),
    "P1": timedelta(hours=4),
    "P2": timedelta(hours=24),
    "P3": timedelta(hours=72),
}
LIST_SCAN_BUDGET = 20000


@dataclass(frozen=True)
class Created:
    """The outcome of a create: the task as first stored, and whether this was a replay."""

    task: dict
    replayed: bool


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fingerprint(request: dict) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(seq: str | None) -> str | None:
    """An opaque page cursor; None at the end of the listing."""
    return base64.urlsafe_b64encode(f"t:{seq}".encode()).decode().rstrip("=") if seq else None


def decode_cursor(cursor: str) -> str:
    """The sequence a cursor stands for; 422 when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, seq = text.partition(":")
    # isascii: str.isdigit() also takes other scripts' digits, which Redis cannot read.
    if kind != "t" or not (seq.isascii() and seq.isdigit()) or len(seq) > 19:
        raise ValidationFailed("Invalid cursor", errors={"cursor": ["Malformed cursor."]})
    return seq


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
        sla = dict(request.get("sla") or {})
        if request.get("sla_deadline"):
            sla["deadline"] = request["sla_deadline"]
        target = SLA_TARGETS[request["priority"]]
        sla.setdefault("target", f"{int(target.total_seconds() // 3600)}h")
        deadline = sla.get("deadline")
        if deadline:
            sla["deadline"] = _stamp(deadline)
        fields = {
            "task_id": task_id,
            "type": request["type"],
            "priority": request["priority"],
            "source": request.get("source") or "api",
            "payload": json.dumps(request.get("payload") or {}),
            "metadata": json.dumps(request.get("metadata") or {}),
            "trace_id": request.get("trace_id") or task_id,
            "assigned_to": routing.route(request["type"], self.settings),
            "created_by": principal,
            "sla": json.dumps(sla),
            "max_retries": str(request.get("max_retries", DEFAULT_MAX_RETRIES)),
        }
        if request.get("parent_task_id"):
            fields["parent_task_id"] = request["parent_task_id"]
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
            fingerprint=_fingerprint(request) if idempotency_key else None,
            # Without a deadline the script sets one: created_at (Redis' clock) + target.
            sla_target_ms=None if deadline else int(target.total_seconds() * 1000),
        )
        return Created(_task(reply), replayed=reply["outcome"] == "replay")

    def get(self, task_id: str) -> dict:
        """One task as of now; 404 when unknown or expired."""
        return _task(self.scripts.get_task(task_id=ids.check_task_id(task_id)))

    def list(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        status: str | None = None,
        task_type: str | None = None,
        assigned_to: str | None = None,
    ):
        """One page, newest first, and the cursor of the next page (None at the end)."""
        reply = self.scripts.list_tasks(
            after_seq=decode_cursor(cursor) if cursor else None,
            limit=limit,
            status=status or None,
            task_type=task_type or None,
            assigned_to=assigned_to or None,
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
    ) -> dict | None:
        """Hand the agent's best ready task to the caller with a lease; None when idle.

        A caller scoped to some agents (`scope`) claims only from their queues: 403.
        """
        if scope and agent not in scope:
            raise Forbidden(_out_of_scope(scope))
        reply = self.scripts.claim_task(
            agent=agent,
            lease_ms=(lease_seconds or self.settings.lease_seconds) * 1000,
            principal=principal,
        )
        return None if reply["outcome"] == "empty" else _task(reply)

    def heartbeat(self, task_id: str, principal: str, lease_seconds: int | None = None) -> dict:
        """Extend the lease of a task the caller claimed (by the claim's lease by default)."""
        reply = self.scripts.heartbeat_task(
            task_id=ids.check_task_id(task_id),
            principal=principal,
            lease_ms=lease_seconds * 1000 if lease_seconds else None,
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
    ) -> dict:
        """Apply one transition of the state machine; 409 when it is not allowed.

        Completing or failing a running task is for the principal holding it (or, with
        `for_any_holder`, an admin): 403 otherwise.
        """
        reply = self.scripts.set_task_status(
            task_id=ids.check_task_id(task_id),
            status=status,
            principal=principal,
            error=error or None,
            for_any_holder=for_any_holder,
            agents=sorted(scope) or None,
        )
        if reply["outcome"] == "out_of_scope":
            raise Forbidden(_out_of_scope(scope))
        return _task(reply, status)

    def cancel(
        self,
        task_id: str,
        principal: str,
        reason: str | None = None,
        scope: frozenset[str] = frozenset(),
    ) -> dict:
        """Cancel a task that has not finished."""
        return self.set_status(task_id, "cancelled", principal, reason, scope=scope)

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
    else:
        action = f"move it to {wanted}"
        holder_only = "This task is running under another principal's lease"
    outcome = reply["outcome"]
    if outcome == "not_found":
        raise NotFound("Task not found")
    if outcome == "conflict":
        current = reply["status"]
        raise Conflict(f"Task is {current}; cannot {action}", extra={"current_status": current})
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
