"""Turning the hashes scripts return (as JSON objects) into the records clients see."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from app.domain.model import SLA_TARGETS, UNSTORED_DEFAULTS

TASK_FIELDS = (
    "task_id",
    "type",
    "priority",
    "source",
    "status",
    "payload",
    "metadata",
    "trace_id",
    "assigned_to",
    "created_by",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "sla",
    "parent_task_id",
    "error",
    "retry_count",
    "max_retries",
    "approval_id",
    "claimed_by",
    "lease_expires_at",
    "approval",
    "lease_token",
    "run_at",
    "depends_on",
)
APPROVAL_FIELDS = (
    "approval_id",
    "task_id",
    "task_type",
    "priority",
    "reason",
    "status",
    "requested_by",
    "requested_at",
    "expires_at",
    "decided_by",
    "decided_at",
    "rejection_reason",
    "comment",
    "policy",
    "required_approvals",
    "approvals",
    "eligible",
    "payload_version",
    "payload_sha256",
    "escalated",
    "requested_by_act",
    "decided_by_act",
)
_JSON = frozenset({"payload", "metadata", "sla", "approval", "depends_on"})
_INT = frozenset({"retry_count", "max_retries", "lease_token"})
# Fields not stored while they equal another one (model.UNSTORED_DEFAULTS' comment).
_SAME_AS = {"trace_id": "task_id", "updated_at": "created_at"}


def stamp(moment: datetime) -> str:
    """A time as the service writes every time: ISO 8601 UTC, milliseconds, `Z` (Lua's
    iso() in lib.lua writes the same)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp_ms(ms: int) -> str:
    """Epoch milliseconds (a stream id's first half) as stamp() writes them."""
    seconds, millis = divmod(ms, 1000)
    return stamp(datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000))


def sla_target_text(target: timedelta) -> str:
    """An SLA target as a task shows it: whole hours, `72h`."""
    return f"{int(target.total_seconds() // 3600)}h"


_TARGET_TEXTS = {priority: sla_target_text(target) for priority, target in SLA_TARGETS.items()}


def default_sla(priority: str | None, created_at: str | None) -> dict | None:
    """The SLA a task has when its creator gave none: its priority's target, due that
    long after its creation (the create script's deadline, to the millisecond)."""
    target = SLA_TARGETS.get(priority or "")
    if target is None or not created_at:
        return None
    # Every stored time is stamp()'s UTC `...Z`: read and written as such, it costs half
    # of a time-zone-aware round trip, once per task shown.
    naive_utc = datetime.fromisoformat(created_at.removesuffix("Z"))
    deadline = (naive_utc + target).isoformat(timespec="milliseconds") + "Z"
    return {"target": _TARGET_TEXTS[priority], "deadline": deadline}


def task_record(raw: dict) -> dict:
    """A task as the API shows it: every field present, the ones not stored at their
    default restored (model.UNSTORED_DEFAULTS, trace_id, updated_at, sla), the others
    absent null."""
    record = {}
    for name in TASK_FIELDS:
        value = raw.get(name, UNSTORED_DEFAULTS.get(name))
        if value is None and name in _SAME_AS:
            value = raw.get(_SAME_AS[name])
        if value is None and name == "sla":
            record[name] = default_sla(raw.get("priority"), raw.get("created_at"))
            continue
        if value is not None and name in _JSON:
            value = json.loads(value)
        elif value is not None and name in _INT:
            value = int(value)
        record[name] = value
    for name in ("payload", "metadata"):  # always objects, even on a partial hash
        if record[name] is None:
            record[name] = {}
    return record


def approval_record(raw: dict) -> dict:
    """An approval; approved_by/approved_at mirror decided_by/decided_at for older clients.

    Records written before policies existed read as one approval by any eligible agent.
    """
    record = {name: raw.get(name) for name in APPROVAL_FIELDS}
    for name in ("requested_by_act", "decided_by_act"):  # JSON lists; null when direct
        record[name] = json.loads(record[name]) if record[name] else None
    approved = record["status"] == "approved"
    record["approved_by"] = record["decided_by"] if approved else None
    record["approved_at"] = record["decided_at"] if approved else None
    record["required_approvals"] = int(raw.get("required_approvals") or 1)
    record["payload_version"] = int(raw.get("payload_version") or 1)
    record["escalated"] = raw.get("escalated") == "1"
    # cjson writes an empty list as {}: `or []` reads both as none.
    record["approvals"] = json.loads(raw.get("approvals") or "[]") or []
    for given in record["approvals"]:
        given.setdefault("act", None)  # kept since 2026-12; earlier entries did not
    record["eligible"] = json.loads(raw.get("eligible") or "[]") or []
    return record
