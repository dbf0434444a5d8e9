"""Identifier formats, defined once: ids the service issues and names clients choose.

Every pattern is published in the OpenAPI spec too, so each is plain ^...$ (\\Z means
nothing to JavaScript) and always applied with fullmatch(): re.match's `$` would also
accept a trailing newline.
"""

from __future__ import annotations

import re
import uuid

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
TASK_ID = re.compile(rf"^{_UUID}$")
APPROVAL_ID = re.compile(rf"^apr-{_UUID}$")
# Agent names (routing targets, queues, metric labels).
AGENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# <NAME> in ORCHESTRATOR_API_KEY_<NAME>; the principal is apikey:<name lowercased>.
KEY_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def new_task_id() -> str:
    """A fresh task id (UUID4)."""
    return str(uuid.uuid4())


def approval_id_for(task_id: str) -> str:
    """An approval's id is derived from its task's id: one approval per task."""
    return f"apr-{task_id}"


def is_task_id(value: str) -> bool:
    """Whether `value` can be a task id (checked before any Redis call)."""
    return TASK_ID.fullmatch(value) is not None


def is_approval_id(value: str) -> bool:
    """Whether `value` can be an approval id (checked before any Redis call)."""
    return APPROVAL_ID.fullmatch(value) is not None


def check_task_id(task_id: str) -> str:
    """404 for anything that cannot be a task id, without asking Redis."""
    from app.errors import NotFound

    if not is_task_id(task_id):
        raise NotFound("Task not found")
    return task_id


def check_approval_id(approval_id: str) -> str:
    """404 for anything that cannot be an approval id, without asking Redis."""
    from app.errors import NotFound

    if not is_approval_id(approval_id):
        raise NotFound("Approval not found")
    return approval_id
