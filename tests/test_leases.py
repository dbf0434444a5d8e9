"""Leases and expiry with 1-second clocks: requeue, retries, heartbeats, sweep, task TTL."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

LEASE_OVER = 1.1  # a 1-second lease (or TTL) has surely run out after this long


def create(client, keys, **body):
    response = client.post(
        "/tasks", json={"type": "bugfix", "priority": "P3", **body}, headers=keys["agent"]
    )
    assert response.status_code == 201
    return response.json["task_id"]


def claim(client, headers, lease_seconds=1):
    return client.post(
        "/tasks/claim", json={"agent": "dev_agent", "lease_seconds": lease_seconds}, headers=headers
    )


def get(client, keys, task_id):
    return client.get(f"/tasks/{task_id}", headers=keys["user"])


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def prefix_of(app) -> str:
    return app.extensions["orchestrator.settings"].queue_prefix


def stored_events(redis_server, app, task_id):
    entries = redis_server.client().xrange(f"{prefix_of(app)}:events")
    return [fields["type"] for _, fields in entries if fields.get("task_id") == task_id]


def test_expired_lease_is_requeued_on_a_plain_read(app, client, keys, redis_server):
    task_id = create(client, keys, max_retries=2)
    claimed = claim(client, keys["agent"])
    assert claimed.json["task"]["status"] == "in_progress"
    time.sleep(LEASE_OVER)
    task = get(client, keys, task_id).json["task"]
    assert (task["status"], task["retry_count"], task["lease_expires_at"]) == ("assigned", 1, None)
    assert task["claimed_by"] is None  # nobody holds it now
    assert task["error"] is None
    assert stored_events(redis_server, app, task_id)[-1] == "task.requeued"
    stats = client.get("/stats").json
    assert stats["tasks"]["assigned"] == 1 and stats["tasks"]["in_progress"] == 0
    assert stats["agents"] == {"dev_agent": 1}
    late = client.post(f"/tasks/{task_id}/heartbeat", headers=keys["agent"])
    assert (late.status_code, late.json["current_status"]) == (409, "assigned")


def test_claim_after_expiry_hands_the_task_out_again(client, keys):
    task_id = create(client, keys, max_retries=2)
    assert claim(client, keys["agent"]).json["task_id"] == task_id
    assert claim(client, keys["ops"]).status_code == 204
    time.sleep(LEASE_OVER)
    # No read in between: the claim script itself requeues the expired lease.
    again = claim(client, keys["ops"], lease_seconds=60)
    assert again.status_code == 200
    task = again.json["task"]
    assert (task["task_id"], task["retry_count"], task["claimed_by"]) == (task_id, 1, "apikey:ops")
    # The first holder's lease is gone: it can neither extend nor be handed the task.
    stale = client.post(f"/tasks/{task_id}/heartbeat", headers=keys["agent"])
    assert stale.status_code == 403


def test_past_max_retries_the_task_fails(client, keys):
    max_retries = 1
    task_id = create(client, keys, max_retries=max_retries)
    for attempt in range(max_retries + 1):
        claimed = claim(client, keys["agent"])
        assert claimed.status_code == 200
        assert claimed.json["task"]["retry_count"] == attempt
        time.sleep(LEASE_OVER)
    task = get(client, keys, task_id).json["task"]
    assert (task["status"], task["error"], task["retry_count"]) == (
        "failed",
        "lease expired",
        max_retries,
    )
    assert task["completed_at"] is not None
    assert claim(client, keys["agent"]).status_code == 204
    stats = client.get("/stats").json
    assert stats["tasks"]["failed"] == 1 and stats["queue"]["failed"] == 1
    assert stats["queue"]["pending"] == stats["queue"]["in_progress"] == 0


def test_heartbeat_keeps_a_task_past_its_first_lease(client, keys):
    task_id = create(client, keys)
    first = claim(client, keys["agent"]).json["task"]["lease_expires_at"]
    time.sleep(0.6)
    beat = client.post(
        f"/tasks/{task_id}/heartbeat", json={"lease_seconds": 2}, headers=keys["agent"]
    )
    assert beat.status_code == 200
    assert beat.json["task"]["lease_expires_at"] > first
    assert beat.json["message"] == f"Lease extended until {beat.json['task']['lease_expires_at']}"
    time.sleep(0.6)  # past the original lease, within the extended one
    task = get(client, keys, task_id).json["task"]
    assert (task["status"], task["retry_count"]) == ("in_progress", 0)
    assert claim(client, keys["ops"]).status_code == 204


def test_heartbeat_renews_the_lease_the_claim_chose(client, keys):
    task_id = create(client, keys)
    claim(client, keys["agent"], lease_seconds=45)
    for body, seconds in ((None, 45), ({"lease_seconds": 90}, 90), (None, 90)):
        task = client.post(f"/tasks/{task_id}/heartbeat", json=body, headers=keys["agent"]).json[
            "task"
        ]
        lease = parse(task["lease_expires_at"]) - parse(task["updated_at"])
        assert lease == timedelta(seconds=seconds)


def test_listing_shows_every_expired_lease_requeued(client, keys):
    # More expired leases than one request settles in passing (100): the listing must
    # still show each row as of now.
    created = [create(client, keys, max_retries=1) for _ in range(105)]
    for _ in created:
        assert claim(client, keys["agent"]).status_code == 200
    time.sleep(LEASE_OVER)
    running = client.get("/tasks?status=in_progress", headers=keys["user"]).json
    assert running["tasks"] == []
    queued = client.get("/tasks?status=assigned&limit=1000", headers=keys["user"]).json
    assert sorted(task["task_id"] for task in queued["tasks"]) == sorted(created)
    assert {task["retry_count"] for task in queued["tasks"]} == {1}


def test_heartbeat_belongs_to_the_claimer(client, keys):
    task_id = create(client, keys)
    claim(client, keys["agent"], lease_seconds=60)
    other = client.post(f"/tasks/{task_id}/heartbeat", headers=keys["ops"])
    assert other.status_code == 403
    assert other.json == {
        "detail": "Only the principal that claimed this task may extend its lease"
    }
    reader = client.post(f"/tasks/{task_id}/heartbeat", headers=keys["user"])
    assert reader.status_code == 403


@pytest.mark.parametrize("state", ["assigned", "completed"])
def test_heartbeat_on_a_task_not_in_progress_is_409(client, keys, state):
    task_id = create(client, keys)
    if state == "completed":
        client.patch(f"/tasks/{task_id}/status?status=completed", headers=keys["agent"])
    response = client.post(f"/tasks/{task_id}/heartbeat", headers=keys["agent"])
    assert response.status_code == 409
    assert response.json == {
        "detail": f"Task is {state}; cannot extend its lease",
        "current_status": state,
    }


@pytest.mark.parametrize("lease_seconds", [0, 43201, "soon"])
def test_heartbeat_lease_is_validated(client, keys, lease_seconds):
    task_id = create(client, keys)
    claim(client, keys["agent"], lease_seconds=60)
    response = client.post(
        f"/tasks/{task_id}/heartbeat", json={"lease_seconds": lease_seconds}, headers=keys["agent"]
    )
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["lease_seconds"]


def test_terminal_tasks_expire_after_the_task_ttl(make_app, keys, redis_server):
    app = make_app(ORCHESTRATOR_TASK_TTL="1")
    client = app.test_client()
    done = create(client, keys)
    client.patch(f"/tasks/{done}/status?status=completed", headers=keys["agent"])
    running = create(client, keys)
    assert claim(client, keys["agent"], lease_seconds=60).json["task_id"] == running
    queued = create(client, keys)
    gated = create(client, keys, priority="P0")
    time.sleep(LEASE_OVER)
    assert get(client, keys, done).status_code == 404
    listed = client.get("/tasks", headers=keys["user"]).json
    assert [task["task_id"] for task in listed["tasks"]] == [gated, queued, running]
    stats = client.get("/stats").json
    assert stats["tasks"] == {
        "awaiting_approval": 1,
        "assigned": 1,
        "in_progress": 1,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert stats["queue"]["completed"] == 1  # the total reached stays
    assert redis_server.client().exists(f"{prefix_of(app)}:task:{done}") == 0
    for task_id, status in (
        (running, "in_progress"),
        (queued, "assigned"),
        (gated, "awaiting_approval"),
    ):
        assert get(client, keys, task_id).json["task"]["status"] == status


def test_sweep_command_settles_without_any_read(make_app, keys, redis_server):
    app = make_app(ORCHESTRATOR_TASK_TTL="1")
    client = app.test_client()
    leased = create(client, keys)
    claim(client, keys["agent"])
    done = create(client, keys)
    client.post(f"/tasks/{done}/cancel", headers=keys["agent"])
    raw, prefix = redis_server.client(), prefix_of(app)
    time.sleep(LEASE_OVER)
    # Nothing happens by itself: the lease is still held, the finished task still stored.
    assert raw.hget(f"{prefix}:task:{leased}", "status") == "in_progress"
    assert raw.exists(f"{prefix}:task:{done}") == 1
    result = app.test_cli_runner().invoke(args=["sweep"])
    assert result.exit_code == 0
    assert "0 still due" in result.output
    assert raw.hmget(f"{prefix}:task:{leased}", "status", "retry_count") == ["assigned", "1"]
    assert raw.zcard(f"{prefix}:leases") == 0
    assert raw.zrange(f"{prefix}:queue:dev_agent", 0, -1) == [leased]
    assert raw.exists(f"{prefix}:task:{done}") == 0
    assert raw.zscore(f"{prefix}:tasks", done) is None
    assert raw.zcard(f"{prefix}:expiring") == 0
    assert raw.hmget(f"{prefix}:counts", "cancelled", "assigned") == ["0", "1"]


def test_claim_requeues_a_backlog_of_expired_leases_before_answering_none(make_app, keys):
    """More expired leases than one request settles: claim still finds its agent's task."""
    client = make_app().test_client()
    for _ in range(130):  # other agents' running tasks, all expiring at once
        client.post("/tasks", json={"type": "faq", "priority": "P3"}, headers=keys["agent"])
    for _ in range(130):
        claimed = client.post(
            "/tasks/claim", json={"agent": "faq_agent", "lease_seconds": 1}, headers=keys["agent"]
        )
        assert claimed.status_code == 200
    mine = client.post("/tasks", json={"type": "bugfix"}, headers=keys["agent"]).json
    claimed = client.post(
        "/tasks/claim", json={"agent": "dev_agent", "lease_seconds": 1}, headers=keys["agent"]
    )
    assert claimed.status_code == 200 and claimed.json["task_id"] == mine["task_id"]
    time.sleep(1.1)
    # 131 leases are due; the dev_agent task's is the newest, beyond the first 100.
    again = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["ops"])
    assert again.status_code == 200 and again.json["task_id"] == mine["task_id"]
    assert again.json["task"]["retry_count"] == 1
