"""Only the principal holding a running task (or an admin) reports its outcome."""

from __future__ import annotations

import time

import pytest


def _claimed(client, keys, lease_seconds=300):
    created = client.post("/tasks", json={"type": "bugfix"}, headers=keys["agent"]).json
    claim = client.post(
        "/tasks/claim",
        json={"agent": "dev_agent", "lease_seconds": lease_seconds},
        headers=keys["agent"],
    )
    assert claim.status_code == 200 and claim.json["task_id"] == created["task_id"]
    return created["task_id"]


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_another_agent_cannot_report_the_outcome(client, keys, status):
    task_id = _claimed(client, keys)
    response = client.patch(f"/tasks/{task_id}/status?status={status}", headers=keys["ops"])
    assert response.status_code == 403
    assert response.json == {"detail": "This task is running under another principal's lease"}
    assert client.get(f"/tasks/{task_id}", headers=keys["user"]).json["task"]["status"] == (
        "in_progress"
    )


def test_the_holder_and_an_admin_may_report(client, keys):
    first = _claimed(client, keys)
    done = client.patch(f"/tasks/{first}/status?status=completed", headers=keys["agent"])
    assert done.status_code == 200 and done.json["task"]["status"] == "completed"
    second = _claimed(client, keys)
    failed = client.patch(
        f"/tasks/{second}/status", json={"status": "failed", "error": "ops"}, headers=keys["admin"]
    )
    assert failed.status_code == 200
    assert failed.json["task"]["status"] == "failed" and failed.json["task"]["error"] == "ops"


def test_any_agent_may_cancel_a_running_task(client, keys):
    task_id = _claimed(client, keys)
    response = client.post(f"/tasks/{task_id}/cancel", headers=keys["ops"])
    assert response.status_code == 200 and response.json["task"]["status"] == "cancelled"


def test_a_late_report_after_the_lease_moved_on_is_refused(client, keys):
    task_id = _claimed(client, keys, lease_seconds=1)
    time.sleep(1.1)
    reclaimed = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["ops"])
    assert reclaimed.status_code == 200 and reclaimed.json["task_id"] == task_id
    assert reclaimed.json["task"]["retry_count"] == 1
    late = client.patch(f"/tasks/{task_id}/status?status=completed", headers=keys["agent"])
    assert late.status_code == 403
    own = client.patch(f"/tasks/{task_id}/status?status=completed", headers=keys["ops"])
    assert own.status_code == 200 and own.json["task"]["claimed_by"] == "apikey:ops"
