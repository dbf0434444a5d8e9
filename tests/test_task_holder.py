"""Only the principal holding a running task (or an admin) reports its outcome."""

from __future__ import annotations

import time

import pytest


def claimed(api, lease_seconds=300) -> str:
    """A new task, claimed by `agent`; its id."""
    task_id = api.create()["task_id"]
    assert api.claim(lease_seconds=lease_seconds)["task_id"] == task_id
    return task_id


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_another_agent_cannot_report_the_outcome(api, status):
    task_id = claimed(api)
    refused = api.status(task_id, status, as_="ops", expect=403)
    assert refused == {"detail": "This task is running under another principal's lease"}
    assert api.task(task_id)["status"] == "in_progress"


def test_the_holder_and_an_admin_may_report(api):
    first = claimed(api)
    assert api.status(first, "completed")["task"]["status"] == "completed"
    second = claimed(api)
    failed = api.status(second, "failed", as_="admin", error="ops")["task"]
    assert (failed["status"], failed["error"]) == ("failed", "ops")


def test_any_agent_may_cancel_a_running_task(api):
    task_id = claimed(api)
    assert api.cancel(task_id, as_="ops")["task"]["status"] == "cancelled"


def test_a_late_report_after_the_lease_moved_on_is_refused(api):
    task_id = claimed(api, lease_seconds=1)
    time.sleep(1.1)
    reclaimed = api.claim(as_="ops")
    assert (reclaimed["task_id"], reclaimed["task"]["retry_count"]) == (task_id, 1)
    api.status(task_id, "completed", as_="agent", expect=403)
    own = api.status(task_id, "completed", as_="ops")
    assert own["task"]["claimed_by"] == "apikey:ops"
