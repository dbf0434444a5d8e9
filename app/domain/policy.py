"""The human-in-the-loop policy: does a new task need a second person's approval, and why."""

from __future__ import annotations

from app.config import Settings


def approval_reason(task: dict, settings: Settings) -> str | None:
    """The reasons a task must wait for approval, joined; None when it may run at once.

    SPEC rules: a gated priority (P0/P1); a gated type (deploy, deployment, feature,
    refactor) going to production, where no environment means production; a feature
    flag change; or the creator asking for approval.
    """
    reasons = []
    if task["priority"] in settings.hitl_priorities:
        reasons.append(f"priority {task['priority']}")
    environment = task.get("payload", {}).get("environment", "production")
    if task["type"] in settings.hitl_task_types and \
            str(environment).strip().lower() == "production":
        reasons.append(f"{task['type']} to production")
    if task.get("metadata", {}).get("feature_flag_change") is True:
        reasons.append("feature flag change")
    if task.get("requires_approval"):
        reasons.append("approval requested by creator")
    return "; ".join(reasons) or None
