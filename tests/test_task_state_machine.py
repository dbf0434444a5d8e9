"""Every (current, requested) status pair through PATCH /tasks/<id>/status, against SPEC §4."""

from __future__ import annotations

import itertools

import pytest

STATES = ("awaiting_approval", "assigned", "in_progress", "completed", "failed", "cancelled")
# SPEC §4, as seen through PATCH: leaving awaiting_approval for assigned takes an approval
# decision, and in_progress goes back to assigned only when its lease expires.
ALLOWED = {
    "awaiting_approval": {"cancelled"},
    "assigned": {"in_progress", "completed", "failed", "cancelled"},
    "in_progress": {"completed", "failed", "cancelled"},
    "completed": set(),
    "failed": set(),
    "cancelled": set(),
}


def reach(client, keys, state: str) -> str:
    """A fresh task in `state`, reached the way a client would; returns its id."""
    priority = "P0" if state == "awaiting_approval" else "P3"
    created = client.post(
        "/tasks", json={"type": "bugfix", "priority": priority}, headers=keys["agent"]
    )
    task_id = created.json["task_id"]
    if state == "in_progress":
        assert (
            client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["agent"]).json[
                "task_id"
            ]
            == task_id
        )
    elif state in ("completed", "failed", "cancelled"):
        moved = client.patch(
            f"/tasks/{task_id}/status", json={"status": state}, headers=keys["agent"]
        )
        assert moved.status_code == 200
    assert client.get(f"/tasks/{task_id}", headers=keys["user"]).json["task"]["status"] == state
    return task_id


def stream_types(redis_server, app, task_id: str) -> list[str]:
    """Event types stored for one task, oldest first (read straight from the stream)."""
    prefix = app.extensions["orchestrator.settings"].queue_prefix
    entries = redis_server.client().xrange(f"{prefix}:events")
    return [fields["type"] for _, fields in entries if fields.get("task_id") == task_id]


@pytest.mark.parametrize(("current", "requested"), list(itertools.product(STATES, STATES)))
def test_every_transition_follows_the_spec_table(
    app, client, keys, redis_server, current, requested
):
    task_id = reach(client, keys, current)
    events_before = stream_types(redis_server, app, task_id)
    response = client.patch(
        f"/tasks/{task_id}/status", json={"status": requested}, headers=keys["agent"]
    )
    stored = client.get(f"/tasks/{task_id}", headers=keys["user"]).json["task"]
    counts = client.get("/stats").json["tasks"]
    if requested in ALLOWED[current]:
        assert response.status_code == 200
        assert response.json["task"]["status"] == stored["status"] == requested
        assert response.json["message"] == f"Task is now {requested}"
        assert (
            stream_types(redis_server, app, task_id)[len(events_before) :][-1]
            == f"task.{requested}"
        )
        final = requested
    else:
        assert response.status_code == 409
        assert response.json == {
            "detail": f"Task is {current}; cannot move it to {requested}",
            "current_status": current,
        }
        assert stream_types(redis_server, app, task_id) == events_before
        final = current
    assert stored["status"] == final
    assert counts == {state: int(state == final) for state in STATES}


def test_cancelling_a_gated_task_withdraws_its_approval(client, keys):
    task_id = reach(client, keys, "awaiting_approval")
    approval_id = f"apr-{task_id}"
    response = client.patch(
        f"/tasks/{task_id}/status", json={"status": "cancelled"}, headers=keys["agent"]
    )
    assert response.status_code == 200
    assert client.get("/approvals/pending", headers=keys["user"]).json["count"] == 0
    decided = client.post(f"/approvals/{approval_id}/approve", headers=keys["ops"])
    assert decided.status_code == 409
    assert (
        client.get(f"/tasks/{task_id}", headers=keys["user"]).json["task"]["status"] == "cancelled"
    )


def test_fields_that_follow_a_transition(client, keys):
    task_id = reach(client, keys, "assigned")
    started = client.patch(f"/tasks/{task_id}/status?status=in_progress", headers=keys["ops"]).json[
        "task"
    ]
    assert started["started_at"] and started["lease_expires_at"]
    assert started["claimed_by"] == "apikey:ops" and started["completed_at"] is None
    failed = client.patch(
        f"/tasks/{task_id}/status", json={"status": "failed", "error": "boom"}, headers=keys["ops"]
    ).json["task"]
    assert (failed["status"], failed["error"]) == ("failed", "boom")
    assert failed["completed_at"] and failed["lease_expires_at"] is None
    assert failed["started_at"] == started["started_at"]


def test_a_started_task_heartbeats_like_a_claimed_one(client, keys):
    task_id = reach(client, keys, "assigned")
    client.patch(f"/tasks/{task_id}/status?status=in_progress", headers=keys["agent"])
    beat = client.post(
        f"/tasks/{task_id}/heartbeat", json={"lease_seconds": 600}, headers=keys["agent"]
    )
    assert beat.status_code == 200 and beat.json["task"]["status"] == "in_progress"
    assert (
        client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["agent"]).status_code
        == 204
    )
