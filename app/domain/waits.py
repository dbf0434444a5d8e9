"""What a scheduled or blocked task waits for: the facts an explanation of it names."""

from __future__ import annotations

from app.domain import ids
from app.domain.scripts import Scripts, rows
from app.errors import NotFound


def schedule_facts(run_at: str) -> tuple[str, dict]:
    """The sentence and section of a task waiting for its run time."""
    return f"The task is scheduled to run at {run_at}.", {"run_at": run_at}


def dependency_facts(unfinished: list[dict]) -> tuple[str, dict]:
    """The sentence and section of a task waiting for dependencies ([{task_id, status}])."""
    names = ", ".join(f"{dep['task_id']} ({dep['status']})" for dep in unfinished)
    plural = "dependency" if len(unfinished) == 1 else "dependencies"
    summary = f"The task waits for {len(unfinished)} unfinished {plural}: {names}."
    return summary, {"unfinished": unfinished}


def waiting_facts(scripts: Scripts, task_id: str) -> dict | None:
    """{"waiting_for": "schedule", "run_at"} or {"waiting_for": "dependencies", "unfinished"}.

    None when the task waits for neither (explain covers the other states); 404 when unknown.
    """
    reply = scripts.read_waits(task_id=ids.check_task_id(task_id))
    if reply["outcome"] == "not_found":
        raise NotFound("Task not found")
    if reply["status"] == "scheduled":
        summary, facts = schedule_facts(reply["run_at"])
        return {"waiting_for": "schedule", "summary": summary, **facts}
    if reply["status"] == "blocked":
        summary, facts = dependency_facts(rows(reply["unfinished"]))
        return {"waiting_for": "dependencies", "summary": summary, **facts}
    return None
