"""Which agent gets a task: the built-in table, overridden by ORCHESTRATOR_ROUTING_RULES."""

from __future__ import annotations

from app.config import Settings


def route(task_type: str, settings: Settings) -> str:
    """The agent whose queue a task of this type joins (settings.routes starts from
    model.DEFAULT_ROUTES)."""
    return settings.routes[task_type]
