"""Identifier formats, checked before any Redis call."""

from __future__ import annotations

import re
import uuid

from app.errors import NotFound

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
# Published in the OpenAPI spec, so plain ^...$ (\Z means nothing to JavaScript); always
# applied with fullmatch, since re.match's `$` also matches before a trailing newline.
TASK_ID = re.compile(rf"^{_UUID}$")
APPROVAL_ID = re.compile(rf"^apr-{_UUID}$")


def new_task_id() -> str:
    """A fresh task id (UUID4)."""
    return str(uuid.uuid4())


def approval_id_for(task_id: str) -> str:
    """An approval's id is derived from its task's id: one approval per task."""
    return f"apr-{task_id}"


def check_task_id(task_id: str) -> str:
    """404 for anything that cannot be a task id, without asking Redis."""
    if not TASK_ID.fullmatch(task_id):
        raise NotFound("Task not found")
    return task_id


def check_approval_id(approval_id: str) -> str:
    """404 for anything that cannot be an approval id, without asking Redis."""
    if not APPROVAL_ID.fullmatch(approval_id):
        raise NotFound("Approval not found")
    return approval_id
