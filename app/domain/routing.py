"""Which agent gets a task: the built-in table, overridden by ORCHESTRATOR_ROUTING_RULES."""

from __future__ import annotations

from app.config import Settings
from app.domain.model import TASK_TYPES

__all__ = ["TASK_TYPES", "route"]


def route(task_type: str, settings: Settings) -> str:
    """The agent whose queue a task of this type joins."""
    return settings.routes[task_type]
