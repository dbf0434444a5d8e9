"""The human-in-the-loop policy: does a new task need a second person's approval, and why."""

from __future__ import annotations

import unicodedata

from app.config import Settings

# Spellings of the production environment. The gate fails closed: an environment that is
# absent, null or blank counts as production, and so does the common short form "prod".
PRODUCTION = frozenset({"production", "prod"})


def identities(principal: str, act: tuple[str, ...] = ()) -> list[str]:
    """Everyone behind a request, as the four-eyes rule compares them.

    The principal and each actor of its token's `act` chain, NFKC-normalised and
    case-folded: API-key principals come from case-insensitive names, and for a JWT `sub`
    folding errs toward refusing ("Alice" cannot approve what "alice" asked for).
    """
    return list(
        dict.fromkeys(unicodedata.normalize("NFKC", i).casefold() for i in (principal, *act))
    )


def _environment(payload) -> str:
    environment = payload.get("environment") if isinstance(payload, dict) else None
    if environment is None or not str(environment).strip():
        return "production"
    return str(environment).strip().lower()


def approval_reason(task: dict, settings: Settings) -> str | None:
    """The reasons a task must wait for approval, joined; None when it may run at once.

    A task is held for: a gated priority (ORCHESTRATOR_HITL_PRIORITIES, default P0/P1);
    a gated type (ORCHESTRATOR_HITL_TASK_TYPES, default deploy, deployment, feature,
    refactor) going to production, where no environment means production; a feature flag
    change (`metadata.feature_flag_change` is JSON true, not a string); or the creator
    asking for approval (`requires_approval`).
    """
    reasons = []
    if task.get("priority") in settings.hitl_priorities:
        reasons.append(f"priority {task['priority']}")
    if (
        task.get("type") in settings.hitl_task_types
        and _environment(task.get("payload")) in PRODUCTION
    ):
        reasons.append(f"{task['type']} to production")
    metadata = task.get("metadata")
    if isinstance(metadata, dict) and metadata.get("feature_flag_change") is True:
        reasons.append("feature flag change")
    if task.get("requires_approval") is True:
        reasons.append("approval requested by creator")
    return "; ".join(reasons) or None
