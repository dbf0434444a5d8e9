"""The task store: create, read, list, claim, heartbeat and move tasks, one script each."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.config import Settings
from app.domain import ids, policy, routing
from app.domain.keys import Keys
from app.domain.model import DEFAULT_MAX_RETRIES
from app.domain.records import task_record
from app.domain.scripts import Scripts
from app.errors import Conflict, Forbidden, NotFound, ValidationFailed

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


def encode_cursor(seq: str) -> str | None:
    """An opaque page cursor; None at the end of the listing."""
    return base64.urlsafe_b64encode(f"t:{seq}".encode()).decode().rstrip("=") if seq else None


def decode_cursor(cursor: str) -> str:
    """The sequence a cursor stands for; 422 when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, seq = text.partition(":")
    if kind != "t" or not seq.isdigit() or len(seq) > 19:
        raise ValidationFailed("Invalid cursor", errors={"cursor": ["Malformed cursor."]})
    return seq


class TaskStore:
    """Tasks in Redis; every change is one named script (see lua/)."""

    def __init__(self, scripts: Scripts, settings: Settings):
        self.scripts = scripts
        self.settings = settings
        self.keys = Keys(settings.queue_prefix)

    def create(self, request: dict, principal: str, idempotency_key: str | None = None) -> Created:
        """Store and route a validated create request; gated tasks open an approval."""
        task_id = ids.new_task_id()
        sla = dict(request.get("sla") or {})
        if request.get("sla_deadline"):
            sla["deadline"] = request["sla_deadline"]
        target = SLA_TARGETS[request["priority"]]
        sla.setdefault("target", f"{int(target.total_seconds() // 3600)}h")
        deadline = sla.get("deadline")
        if deadline:
            sla["deadline"] = _stamp(deadline)
        # Without a deadline the script sets one: created_at (Redis' clock) + target.
        default_deadline_ms = "" if deadline else int(target.total_seconds() * 1000)
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
        reason = policy.approval_reason(request, self.settings)
        gate = (
            {
                "approval_id": ids.approval_id_for(task_id),
                "reason": reason,
                "requested_by": principal,
            }
            if reason
            else None
        )
        idem = self.keys.idempotency(principal, idempotency_key) if idempotency_key else ""
        outcome = self.scripts.run(
            "create_task",
            json.dumps(fields),
            json.dumps(gate) if gate else "",
            idem,
            _fingerprint(request) if idempotency_key else "",
            default_deadline_ms,
        )
        if outcome[0] == "mismatch":
            raise ValidationFailed(
                "Idempotency-Key was already used with a different request body",
                errors={"Idempotency-Key": ["Reused with a different body."]},
            )
        return Created(task_record(outcome[1]), replayed=outcome[0] == "replay")

    def get(self, task_id: str) -> dict:
        """One task as of now; 404 when unknown or expired."""
        flat = self.scripts.run("get_task", ids.check_task_id(task_id))
        if not flat:
            raise NotFound("Task not found")
        return task_record(flat)

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
        seq = decode_cursor(cursor) if cursor else ""
        reply = self.scripts.run(
            "list_tasks",
            seq,
            limit,
            status or "",
            task_type or "",
            assigned_to or "",
            LIST_SCAN_BUDGET,
        )
        return [task_record(flat) for flat in reply[1:]], encode_cursor(reply[0])

    def claim(self, agent: str, principal: str, lease_seconds: int | None = None) -> dict | None:
        """Hand the agent's best ready task to the caller with a lease; None when idle."""
        lease_ms = (lease_seconds or self.settings.lease_seconds) * 1000
        flat = self.scripts.run("claim_task", agent, lease_ms, principal)
        return task_record(flat) if flat else None

    def heartbeat(self, task_id: str, principal: str, lease_seconds: int | None = None) -> dict:
        """Extend the lease of a task the caller claimed (by the claim's lease by default)."""
        lease_ms = lease_seconds * 1000 if lease_seconds else ""
        reply = self.scripts.run(
            "heartbeat_task",
            ids.check_task_id(task_id),
            lease_ms,
            principal,
            self.settings.lease_seconds * 1000,
        )
        if reply[0] == "forbidden":
            raise Forbidden("Only the principal that claimed this task may extend its lease")
        return self._unwrap(reply, "heartbeat")

    def set_status(
        self,
        task_id: str,
        status: str,
        principal: str,
        error: str | None = None,
        *,
        for_any_holder: bool = False,
    ) -> dict:
        """Apply one transition of the state machine; 409 when it is not allowed.

        Completing or failing a running task is for the principal holding it (or, with
        `for_any_holder`, an admin): 403 otherwise.
        """
        reply = self.scripts.run(
            "set_task_status",
            ids.check_task_id(task_id),
            status,
            error or "",
            principal,
            self.settings.lease_seconds * 1000,
            "1" if for_any_holder else "0",
        )
        if reply[0] == "forbidden":
            raise Forbidden("This task is running under another principal's lease")
        return self._unwrap(reply, status)

    def cancel(self, task_id: str, principal: str, reason: str | None = None) -> dict:
        """Cancel a task that has not finished."""
        return self.set_status(task_id, "cancelled", principal, reason)

    def sweep(self, budget: int = 1000) -> int:
        """Apply what fell due; returns how much is still due."""
        return int(self.scripts.run("sweep", budget))

    @staticmethod
    def _unwrap(reply: list, wanted: str) -> dict:
        if reply[0] == "not_found":
            raise NotFound("Task not found")
        if reply[0] == "conflict":
            current = reply[1]
            action = "extend its lease" if wanted == "heartbeat" else f"move it to {wanted}"
            raise Conflict(f"Task is {current}; cannot {action}", extra={"current_status": current})
        return task_record(reply[1])
