"""Leases and expiry with 1-second clocks: requeue, retries, heartbeats, sweep, task TTL."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tests.helpers import metric_sample, parse_time, redis_keys, stream_types

LEASE_OVER = 1.1  # a 1-second lease (or TTL) has surely run out after this long


def test_expired_lease_is_requeued_on_a_plain_read(app, api, redis_server):
    task_id = api.create(max_retries=2)["task_id"]
    assert api.claim(lease_seconds=1)["task"]["status"] == "in_progress"
    time.sleep(LEASE_OVER)
    task = api.task(task_id)
    assert (task["status"], task["retry_count"], task["lease_expires_at"]) == ("assigned", 1, None)
    assert task["claimed_by"] is None  # nobody holds it now
    assert task["error"] is None
    assert stream_types(redis_server.client(), app, task_id)[-1] == "task.requeued"
    stats = api.stats()
    assert stats["tasks"]["assigned"] == 1 and stats["tasks"]["in_progress"] == 0
    assert stats["agents"] == {"dev_agent": 1}
    assert api.heartbeat(task_id, expect=409)["current_status"] == "assigned"


# Each reader of the counters applies what fell due before it counts (README.md, Task
# life cycle), so the one request made after the lease ran out already sees the task
# back in its queue: (queued for dev_agent, running).
def _counted_by_stats(api):
    stats = api.stats()
    return stats["agents"]["dev_agent"], stats["queue"]["in_progress"]


def _counted_by_health(api):
    counters = api.health()["queue_stats"]
    return counters["pending"], counters["in_progress"]


def _counted_by_metrics(api):
    scrape = api.client.get("/metrics")
    assert scrape.status_code == 200
    text = scrape.get_data(as_text=True)
    return (
        metric_sample(text, "orchestrator_queue_depth", agent="dev_agent"),
        metric_sample(text, "orchestrator_tasks_in_progress"),
    )


@pytest.mark.parametrize(
    "count",
    [
        pytest.param(_counted_by_stats, id="stats"),
        pytest.param(_counted_by_health, id="health"),
        pytest.param(_counted_by_metrics, id="metrics"),
    ],
)
def test_counters_requeue_an_expired_lease_first(api, count):
    api.create()
    assert api.claim(lease_seconds=1)["task"]["status"] == "in_progress"
    time.sleep(LEASE_OVER)
    assert count(api) == (1, 0)


def test_an_agent_at_its_cap_whose_lease_expired_behind_a_backlog_claims_again(make_app, api):
    """More leases expired than one settle() applies (100), the capped agent's last: its
    claim applies the backlog before answering 'capped', so its own expired lease frees
    its place at once rather than after a few more polls."""
    api = api.using(make_app(ORCHESTRATOR_AGENT_CONCURRENCY="dev_agent=1").test_client())
    for _ in range(130):
        api.create(type="faq")
        api.claim("faq_agent", lease_seconds=1)
    held = api.create()["task_id"]
    assert api.claim(lease_seconds=1)["task_id"] == held
    time.sleep(LEASE_OVER)
    again = api.claim()
    assert (again["task_id"], again["task"]["retry_count"]) == (held, 1)


def test_claim_requeues_an_expired_lease_before_taking_from_the_queue(api):
    """The expired P2 task outranks the P3 one queued meanwhile: it is handed out again."""
    expired = api.create(priority="P2")["task_id"]
    assert api.claim(lease_seconds=1)["task_id"] == expired
    api.create(priority="P3")
    time.sleep(LEASE_OVER)
    again = api.claim(as_="ops")
    assert (again["task_id"], again["task"]["retry_count"]) == (expired, 1)


def test_claim_after_expiry_hands_the_task_out_again(api):
    task_id = api.create(max_retries=2)["task_id"]
    assert api.claim(lease_seconds=1)["task_id"] == task_id
    api.claim(as_="ops", expect=204)
    time.sleep(LEASE_OVER)
    # No read in between: the claim script itself requeues the expired lease.
    task = api.claim(as_="ops", lease_seconds=60)["task"]
    assert (task["task_id"], task["retry_count"], task["claimed_by"]) == (task_id, 1, "apikey:ops")
    # The first holder's lease is gone: it can neither extend nor be handed the task.
    api.heartbeat(task_id, expect=403)


def test_past_max_retries_the_task_fails(api):
    max_retries = 1
    task_id = api.create(max_retries=max_retries)["task_id"]
    for attempt in range(max_retries + 1):
        assert api.claim(lease_seconds=1)["task"]["retry_count"] == attempt
        time.sleep(LEASE_OVER)
    task = api.task(task_id)
    assert (task["status"], task["error"], task["retry_count"]) == (
        "failed",
        "lease expired",
        max_retries,
    )
    assert task["completed_at"] is not None
    api.claim(expect=204)
    stats = api.stats()
    assert stats["tasks"]["failed"] == 1 and stats["queue"]["failed"] == 1
    assert stats["queue"]["pending"] == stats["queue"]["in_progress"] == 0


def test_heartbeat_keeps_a_task_past_its_first_lease(api):
    task_id = api.create()["task_id"]
    first = api.claim(lease_seconds=1)["task"]["lease_expires_at"]
    time.sleep(0.6)
    beat = api.heartbeat(task_id, lease_seconds=2)
    assert beat["task"]["lease_expires_at"] > first
    assert beat["message"] == f"Lease extended until {beat['task']['lease_expires_at']}"
    time.sleep(0.6)  # past the original lease, within the extended one
    task = api.task(task_id)
    assert (task["status"], task["retry_count"]) == ("in_progress", 0)
    api.claim(as_="ops", expect=204)


def test_heartbeat_renews_the_lease_the_claim_chose(api):
    task_id = api.create()["task_id"]
    api.claim(lease_seconds=45)
    for body, seconds in (({}, 45), ({"lease_seconds": 90}, 90), ({}, 90)):
        task = api.heartbeat(task_id, **body)["task"]
        lease = parse_time(task["lease_expires_at"]) - parse_time(task["updated_at"])
        assert lease == timedelta(seconds=seconds)


def test_listing_shows_every_expired_lease_requeued(app, client, keys, api, redis_server):
    # More expired leases than one request settles in passing (100): the listing must
    # still show each row as of now.
    created = [api.create(max_retries=1)["task_id"] for _ in range(105)]
    for _ in created:
        api.claim(lease_seconds=60)
    # Every lease runs out at once (105 one-second claims on a busy machine would see the
    # first ones expire, and be claimed again, before the last one is made).
    leases = redis_keys(app).name("leases")
    raw = redis_server.client()
    raw.zadd(leases, dict.fromkeys(raw.zrange(leases, 0, -1), 1))
    running = client.get("/tasks?status=in_progress", headers=keys["user"]).json
    assert running["tasks"] == []
    queued = client.get("/tasks?status=assigned&limit=1000", headers=keys["user"]).json
    assert sorted(task["task_id"] for task in queued["tasks"]) == sorted(created)
    assert {task["retry_count"] for task in queued["tasks"]} == {1}


def test_heartbeat_belongs_to_the_claimer(api):
    task_id = api.create()["task_id"]
    api.claim(lease_seconds=60)
    assert api.heartbeat(task_id, as_="ops", expect=403) == {
        "detail": "Only the principal that claimed this task may extend its lease"
    }
    api.heartbeat(task_id, as_="user", expect=403)


@pytest.mark.parametrize("state", ["assigned", "completed"])
def test_heartbeat_on_a_task_not_in_progress_is_409(api, state):
    task_id = api.create()["task_id"]
    if state == "completed":
        api.status(task_id, "completed")
    assert api.heartbeat(task_id, expect=409) == {
        "detail": f"Task is {state}; cannot extend its lease",
        "current_status": state,
    }


@pytest.mark.parametrize("lease_seconds", [0, 43201, "soon"])
def test_heartbeat_lease_is_validated(api, lease_seconds):
    task_id = api.create()["task_id"]
    api.claim(lease_seconds=60)
    refused = api.heartbeat(task_id, expect=422, lease_seconds=lease_seconds)
    assert list(refused["errors"]) == ["lease_seconds"]


def test_terminal_tasks_expire_after_the_task_ttl(make_app, api, redis_server):
    app = make_app(ORCHESTRATOR_TASK_TTL="1")
    api = api.using(app.test_client())
    done = api.create()["task_id"]
    api.status(done, "completed")
    running = api.create()["task_id"]
    assert api.claim(lease_seconds=60)["task_id"] == running
    queued = api.create()["task_id"]
    gated = api.create(priority="P0")["task_id"]
    time.sleep(LEASE_OVER)
    api.call("GET", f"/tasks/{done}", expect=404)
    listed = api.call("GET", "/tasks")
    assert [task["task_id"] for task in listed["tasks"]] == [gated, queued, running]
    stats = api.stats()
    assert stats["tasks"] == {
        "blocked": 0,
        "awaiting_approval": 1,
        "scheduled": 0,
        "assigned": 1,
        "in_progress": 1,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert stats["queue"]["completed"] == 1  # the total reached stays
    assert redis_server.client().exists(redis_keys(app).task(done)) == 0
    for task_id, status in (
        (running, "in_progress"),
        (queued, "assigned"),
        (gated, "awaiting_approval"),
    ):
        assert api.task(task_id)["status"] == status


def test_sweep_command_settles_without_any_read(make_app, api, redis_server):
    app = make_app(ORCHESTRATOR_TASK_TTL="1")
    api = api.using(app.test_client())
    leased = api.create()["task_id"]
    api.claim(lease_seconds=1)
    done = api.create()["task_id"]
    api.cancel(done)
    raw, key = redis_server.client(), redis_keys(app)
    time.sleep(LEASE_OVER)
    # Nothing happens by itself: the lease is still held, the finished task still stored.
    assert raw.hget(key.task(leased), "status") == "in_progress"
    assert raw.exists(key.task(done)) == 1
    result = app.test_cli_runner().invoke(args=["sweep"])
    assert result.exit_code == 0
    assert "0 still due" in result.output
    assert raw.hmget(key.task(leased), "status", "retry_count") == ["assigned", "1"]
    assert raw.zcard(key.name("leases")) == 0
    assert raw.zrange(key.queue("dev_agent"), 0, -1) == [leased]
    assert raw.exists(key.task(done)) == 0
    for index in (
        key.name("by_status", "cancelled"),
        key.name("by_route", "bugfix", "dev_agent"),
    ):
        assert raw.zscore(index, done) is None
    assert raw.exists(key.name("task_events", done)) == 0
    assert raw.zcard(key.name("expiring")) == 0
    assert raw.zrange(key.name("by_status", "assigned"), 0, -1) == [leased]


def test_claim_requeues_a_backlog_of_expired_leases_before_answering_none(api):
    """More expired leases than one request settles: claim still finds its agent's task."""
    for _ in range(130):  # other agents' running tasks, all expiring at once
        api.create(type="faq")
    for _ in range(130):
        api.claim("faq_agent", lease_seconds=1)
    mine = api.create()["task_id"]
    assert api.claim(lease_seconds=1)["task_id"] == mine
    time.sleep(LEASE_OVER)
    # 131 leases are due; the dev_agent task's is the newest, beyond the first 100.
    again = api.claim(as_="ops")
    assert (again["task_id"], again["task"]["retry_count"]) == (mine, 1)
