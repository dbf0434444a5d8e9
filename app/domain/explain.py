"""Why isn't my task running? One English sentence and the facts behind it, for any state.

`waiting_for` names what the task waits for; `details` holds one section per fact that
applies, keyed by that name (`approval`, `agent`, `lease`, and `outcome` once it ended).
A new waiting state adds an entry to WAITING_FOR and a function to SECTIONS.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from app.domain import ids
from app.domain.records import approval_record, task_record
from app.domain.scripts import Scripts, rows
from app.errors import NotFound

# Task status -> what it waits for (terminal states wait for nothing).
WAITING_FOR = {
    "blocked": "dependencies",
    "awaiting_approval": "approval",
    "scheduled": "schedule",
    "assigned": "agent",
    "in_progress": "lease",
}


def duration(seconds: float) -> str:
    """A duration a person reads at a glance: "45 s", "12 min", "2 h 10 min", "3 d 4 h"."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{secs} s"


def _seconds_until(stamp: str | None, now_ms: int) -> int | None:
    if not stamp:
        return None
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
    return max(0, round(moment.timestamp() - now_ms / 1000))


def _who(spec: str) -> str:
    kind, _, name = spec.partition(":")
    if kind == "role":
        return f"any {name} (or higher role)"
    if kind == "group":
        return f"group {name}"
    return spec


def approval_section(task: dict, facts: dict) -> tuple[str, dict]:
    """Approvals received and required, who can still act, and the expiry."""
    approval, now_ms = facts["approval"], facts["now"]
    approved = [given["by"] for given in approval["approvals"]]
    # A named principal who already approved (or asked) cannot add to the count.
    can_act = [
        spec
        for spec in approval["eligible"]
        if spec.split(":", 1)[0] in ("role", "group")
        or spec not in (*approved, approval["requested_by"])
    ]
    remaining = max(0, approval["required_approvals"] - len(approved))
    expires_in = _seconds_until(approval["expires_at"], now_ms)
    section = {
        "approval_id": approval["approval_id"],
        "status": approval["status"],
        "policy": approval["policy"],
        "received": len(approved),
        "required": approval["required_approvals"],
        "approved_by": approved,
        "can_act": can_act,
        "expires_at": approval["expires_at"],
        "expires_in_seconds": expires_in,
        "escalated": approval["escalated"],
        "escalation": facts["escalation"],
        "payload_version": approval["payload_version"],
        "payload_sha256": approval["payload_sha256"],
    }
    plural = "approval" if remaining == 1 else "approvals"
    who = " or ".join(_who(spec) for spec in can_act) or "nobody left"
    summary = f"Waiting for {remaining} more {plural} from {who}"
    if expires_in is not None:
        summary += f"; expires in {duration(expires_in)}"
        if facts["escalation"]:
            targets = " or ".join(_who(spec) for spec in facts["escalation"]["escalate_to"])
            summary += f", then escalates to {targets}"
    return summary + ".", section


def _escalation(raw: dict) -> dict | None:
    """The escalation still to come (once, at expiry), or None."""
    escalate_to = json.loads(raw.get("escalate_to") or "[]") or []
    if not escalate_to or raw.get("escalated") == "1":
        return None
    return {"escalate_to": escalate_to, "extend_seconds": int(raw.get("extend_ms") or 0) // 1000}


def agent_section(task: dict, facts: dict) -> tuple[str, dict]:
    """The agent, the task's place in its queue and how many are ahead."""
    rank = facts.get("queue_rank")
    ahead = rank if isinstance(rank, int) else None
    section = {
        "agent": task["assigned_to"],
        "queue_position": None if ahead is None else ahead + 1,
        "ahead": ahead,
        "queued": facts.get("queued", 0),
    }
    if ahead is None:
        return f"Queued for {task['assigned_to']}.", section
    if ahead == 0:
        return f"Next in line for {task['assigned_to']}: waiting for it to claim a task.", section
    tasks = "task" if ahead == 1 else "tasks"
    return (
        f"Queued for {task['assigned_to']} at position {ahead + 1}, {ahead} {tasks} ahead.",
        section,
    )


def lease_section(task: dict, facts: dict) -> tuple[str, dict]:
    """Who holds the task and until when."""
    now_ms = facts["now"]
    expires_in = _seconds_until(task["lease_expires_at"], now_ms)
    section = {
        "holder": task["claimed_by"],
        "expires_at": task["lease_expires_at"],
        "expires_in_seconds": expires_in,
        "retry_count": task["retry_count"],
        "max_retries": task["max_retries"],
    }
    summary = f"Running under {task['claimed_by'] or 'an agent'}'s lease"
    if expires_in is not None:
        summary += f", which expires in {duration(expires_in)} unless renewed"
    return summary + ".", section


def dependencies_section(_task: dict, facts: dict) -> tuple[str, dict]:
    """The dependencies not completed yet ([{task_id, status}]), in the order given."""
    unfinished = rows(facts.get("unfinished"))
    names = ", ".join(f"{dep['task_id']} ({dep['status']})" for dep in unfinished)
    plural = "dependency" if len(unfinished) == 1 else "dependencies"
    summary = f"The task waits for {len(unfinished)} unfinished {plural}: {names}."
    return summary, {"unfinished": unfinished}


def schedule_section(task: dict, _facts: dict) -> tuple[str, dict]:
    """The run time the task waits for."""
    return f"The task is scheduled to run at {task['run_at']}.", {"run_at": task["run_at"]}


def outcome_section(task: dict, _facts: dict) -> tuple[str, dict]:
    """How a finished task ended."""
    section = {
        "status": task["status"],
        "finished_at": task["completed_at"],
        "error": task["error"],
    }
    summary = f"{task['status'].capitalize()} at {task['completed_at']}"
    if task["error"]:
        summary += f": {task['error']}"
    return summary + "; nothing left to wait for.", section


# What each waiting state (and the end) shows; keyed as `waiting_for` names them.
SECTIONS = {
    "dependencies": dependencies_section,
    "approval": approval_section,
    "schedule": schedule_section,
    "agent": agent_section,
    "lease": lease_section,
    "outcome": outcome_section,
}


class Explainer:
    """Reads a task's facts in one script call and puts them in words."""

    def __init__(self, scripts: Scripts):
        self.scripts = scripts

    def explain(self, task_id: str) -> dict:
        """{task_id, status, waiting_for, summary, details} for a task as of now; 404 if unknown."""
        facts = self.scripts.explain_task(task_id=ids.check_task_id(task_id))
        if facts["outcome"] == "not_found":
            raise NotFound("Task not found")
        task = task_record(facts["task"])
        facts["now"] = int(facts["now"])
        raw = facts.get("approval") or {}
        facts["escalation"] = _escalation(raw)
        facts["approval"] = approval_record(raw) if raw else None
        waiting_for = WAITING_FOR.get(task["status"])
        details: dict = {}
        if facts["approval"] is not None:
            # Also once decided: it tells why a task was released or cancelled.
            details["approval"] = approval_section(task, facts)[1]
        section = waiting_for if waiting_for in SECTIONS else "outcome"
        if section == "approval" and facts["approval"] is None:
            section = "outcome"  # its record is gone: say what the task itself says
        summary, details[section] = SECTIONS[section](task, facts)
        return {
            "task_id": task["task_id"],
            "status": task["status"],
            "waiting_for": waiting_for,
            "summary": summary,
            "details": details,
        }
