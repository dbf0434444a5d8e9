"""The human-in-the-loop policy: does a new task need a second person's approval, and why."""

from __future__ import annotations

import unicodedata

from app.config import Settings


def identities(principal: str, act: tuple[str, ...] = ()) -> list[str]:
    """Everyone behind a request, as the four-eyes rule compares them.

    The principal and each actor of its token's `act` chain, NFKC-normalised and
    case-folded: API-key principals come from case-insensitive names, and for a JWT `sub`
    folding errs toward refusing ("Alice" cannot approve what "alice" asked for).
    """
    return list(
        dict.fromkeys(unicodedata.normalize("NFKC", i).casefold() for i in (principal, *act))
    )


def normalise_environment(name: str) -> str:
    """An environment name as compared: NFKC-normalised, case-folded, trimmed."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def _ungated(payload, settings: Settings) -> bool:
    """Whether payload.environment is a listed non-production name; fails closed.

    Absent, null, not a string (false, 0, []) or any unlisted name ("prod-eu", "live",
    a homoglyph of "production") is gated.
    """
    environment = payload.get("environment") if isinstance(payload, dict) else None
    if not isinstance(environment, str):
        return False
    return normalise_environment(environment) in settings.hitl_ungated_environments


def approval_reason(task: dict, settings: Settings) -> str | None:
    """The reasons a task must wait for approval, joined; None when it may run at once.

    A task is held for: a gated priority (ORCHESTRATOR_HITL_PRIORITIES, default P0/P1);
    a gated type (ORCHESTRATOR_HITL_TASK_TYPES, default deploy, deployment, feature,
    refactor) unless its environment is listed in ORCHESTRATOR_HITL_UNGATED_ENVIRONMENTS;
    a feature flag change (`metadata.feature_flag_change` is JSON true, not a string); or
    the creator asking for approval (`requires_approval`).
    """
    reasons = []
    if task.get("priority") in settings.hitl_priorities:
        reasons.append(f"priority {task['priority']}")
    if task.get("type") in settings.hitl_task_types and not _ungated(task.get("payload"), settings):
        reasons.append(f"{task['type']} to production")
    metadata = task.get("metadata")
    if isinstance(metadata, dict) and metadata.get("feature_flag_change") is True:
        reasons.append("feature flag change")
    if task.get("requires_approval") is True:
        reasons.append("approval requested by creator")
    return "; ".join(reasons) or None
