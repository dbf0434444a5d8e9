"""What a scheduled or blocked task waits for: the facts an explanation of it names."""

from __future__ import annotations

from app.domain import ids
from app.domain.scripts import Scripts, rows
from app.errors import NotFound


def waiting_facts(scripts: Scripts, task_id: str) -> dict | None:
    """{"waiting_for": "schedule", "run_at"} or {"waiting_for": "dependencies", "unfinished"}.

    None when the task waits for neither (explain covers the other states); 404 when unknown.
    """
    reply = scripts.read_waits(task_id=ids.check_task_id(task_id))
    if reply["outcome"] == "not_found":
        raise NotFound("Task not found")
    if reply["status"] == "scheduled":
        return {
            "waiting_for": "schedule",
            "summary": f"The task is scheduled to run at {reply['run_at']}.",
            "run_at": reply["run_at"],
        }
    if reply["status"] == "blocked":
        unfinished = rows(reply["unfinished"])
        names = ", ".join(f"{dep['task_id']} ({dep['status']})" for dep in unfinished)
        return {
            "waiting_for": "dependencies",
            "summary": f"The task waits for {len(unfinished)} unfinished dependencies: {names}.",
            "unfinished": unfinished,
        }
    return None
