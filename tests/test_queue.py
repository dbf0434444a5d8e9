"""The queue agents lean on, in-process: schedules, dependencies, fencing tokens, caps,
retry and redrive (live-server proofs are in test_queue_live.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import metric_sample, redis_keys, stream_types

LEASE_OVER = 1.1


def redis_now(redis_server) -> datetime:
    """Redis' clock, the one every script reads."""
    seconds, micros = redis_server.client().time()
    return datetime.fromtimestamp(seconds + micros / 1e6, UTC)


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- schedules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"run_at": "2001-01-01T00:00:00Z"}, "run_at", id="past"),
        pytest.param({"delay_seconds": 30 * 86400 + 1}, "delay_seconds", id="delay-too-far"),
        pytest.param({"delay_seconds": -1}, "delay_seconds", id="negative-delay"),
        pytest.param({"delay_seconds": 1.5}, "delay_seconds", id="fractional-delay"),
        pytest.param({"run_at": "soon"}, "run_at", id="not-a-time"),
        pytest.param({"depends_on": ["nope"]}, "depends_on", id="not-an-id"),
        pytest.param({"depends_on": "x"}, "depends_on", id="not-a-list"),
    ],
)
def test_create_refuses_bad_schedules_and_dependencies(api, body, field):
    response = api.create(expect=422, **body)
    assert field in response["errors"]


def test_run_at_more_than_30_days_ahead_is_refused_by_redis_clock(api, redis_server):
    too_far = redis_now(redis_server) + timedelta(days=30, seconds=5)
    response = api.create(expect=422, run_at=stamp(too_far))
    assert response["errors"] == {"run_at": ["Must be in the future and at most 30 days ahead."]}
    within = redis_now(redis_server) + timedelta(days=29)
    assert api.create(run_at=stamp(within))["task"]["status"] == "scheduled"


def test_run_at_and_delay_together_are_refused(api):
    response = api.create(expect=422, run_at="2999-01-01T00:00:00Z", delay_seconds=5)
    assert "run_at" in response["errors"]


def test_unknown_dependency_is_refused_and_nothing_is_stored(api):
    missing = "6f1c5a0e-2b7d-4c1e-9f3a-0d2b8e4c7a11"
    response = api.create(expect=422, depends_on=[missing])
    assert response["errors"] == {"depends_on": [f"Unknown task ids: {missing}"]}
    assert sum(api.stats()["tasks"].values()) == 0


def test_a_scheduled_task_is_shown_counted_and_cancellable(app, api, redis_server):
    created = api.create(delay_seconds=60)
    task = created["task"]
    assert task["status"] == "scheduled" and created["message"].startswith("Task created; sch")
    assert task["run_at"] > task["created_at"]
    assert api.claim(expect=204) is None
    stats = api.stats()
    assert stats["queue"]["scheduled"] == stats["tasks"]["scheduled"] == 1
    assert stats["agents"] == {}
    scrape = api.client.get("/metrics").get_data(as_text=True)
    assert metric_sample(scrape, "orchestrator_tasks_scheduled") == 1
    assert metric_sample(scrape, "orchestrator_tasks", status="scheduled") == 1
    api.cancel(task["task_id"])
    assert api.stats()["queue"]["scheduled"] == 0
    assert redis_server.client().zcard(redis_keys(app).name("scheduled")) == 0
    assert stream_types(redis_server.client(), app, task["task_id"]) == [
        "task.created",
        "task.scheduled",
        "task.cancelled",
    ]


def test_a_due_schedule_is_applied_on_a_plain_read_and_by_sweep(make_app, api, redis_server):
    app = make_app()
    api = api.using(app.test_client())
    read = api.create(delay_seconds=1)["task_id"]
    time.sleep(LEASE_OVER)
    assert api.task(read)["status"] == "assigned"
    assert stream_types(redis_server.client(), app, read)[-1] == "task.assigned"
    swept = api.create(delay_seconds=1)["task_id"]
    raw, key = redis_server.client(), redis_keys(app)
    time.sleep(LEASE_OVER)
    assert raw.hget(key.task(swept), "status") == "scheduled"  # nothing by itself
    result = app.test_cli_runner().invoke(args=["sweep"])
    assert result.exit_code == 0 and "0 still due" in result.output
    assert raw.hget(key.task(swept), "status") == "assigned"


def test_the_gate_comes_first_then_the_schedule(api):
    created = api.create(priority="P0", delay_seconds=60)
    assert created["task"]["status"] == "awaiting_approval"
    decided = api.approve(created["approval_id"])
    assert decided["task"]["status"] == "scheduled"
    assert api.claim(expect=204) is None


def test_approved_after_its_run_time_a_task_is_queued_at_once(api):
    created = api.create(priority="P0", delay_seconds=1)
    time.sleep(LEASE_OVER)
    assert api.task(created["task_id"])["status"] == "awaiting_approval"
    api.approve(created["approval_id"])
    assert api.claim()["task_id"] == created["task_id"]


# --- dependencies ----------------------------------------------------------------------


def test_blocked_until_every_dependency_completes(api):
    first, second = api.create()["task_id"], api.create()["task_id"]
    waiting = api.create(depends_on=[first, second, first])
    assert waiting["task"]["status"] == "blocked"
    assert waiting["task"]["depends_on"] == [first, second]
    for task_id in (first, second):
        assert api.claim()["task_id"] == task_id
    assert api.claim(expect=204) is None
    api.status(first, "completed")
    assert api.task(waiting["task_id"])["status"] == "blocked"
    api.status(second, "completed")
    assert api.claim()["task_id"] == waiting["task_id"]


def test_a_completed_dependency_does_not_block(api):
    done = api.create()["task_id"]
    api.status(done, "completed")
    assert api.create(depends_on=[done])["task"]["status"] == "assigned"


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
def test_an_ended_dependency_cancels_at_creation(api, ending):
    ended = api.create()["task_id"]
    api.status(ended, ending)
    created = api.create(depends_on=[ended])
    assert created["task"]["status"] == "cancelled"
    assert created["task"]["error"] == f"dependency {ended} {ending}"


def test_a_blocked_gated_task_asks_for_approval_only_when_released(api):
    first = api.create()["task_id"]
    gated = api.create(priority="P0", depends_on=[first])
    assert gated["task"]["status"] == "blocked" and gated["task"]["approval_id"] is None
    assert api.call("GET", "/approvals/pending")["count"] == 0
    api.status(first, "completed")
    task = api.task(gated["task_id"])
    assert task["status"] == "awaiting_approval"
    api.approve(task["approval_id"])
    assert api.claim()["task_id"] == gated["task_id"]


def test_cancelling_a_blocked_task_cancels_its_dependants(api):
    first = api.create()["task_id"]
    middle = api.create(depends_on=[first])["task_id"]
    last = api.create(depends_on=[middle])["task_id"]
    api.cancel(middle)
    assert api.task(last)["error"] == f"dependency {middle} cancelled"
    api.status(first, "completed")
    assert api.stats()["tasks"]["blocked"] == 0


def test_a_dependency_failed_by_lease_expiry_cancels_its_dependant(api):
    first = api.create(max_retries=0)["task_id"]
    waiting = api.create(depends_on=[first])["task_id"]
    api.claim(lease_seconds=1)
    time.sleep(LEASE_OVER)
    assert api.task(waiting)["error"] == f"dependency {first} failed"


# --- fencing tokens ----------------------------------------------------------------------


def test_every_claim_gets_a_larger_token(api):
    task_id = api.create()["task_id"]
    first = api.claim(lease_seconds=1)
    assert first["lease_token"] == first["task"]["lease_token"] == 1
    time.sleep(LEASE_OVER)
    again = api.claim()
    assert (again["task_id"], again["lease_token"]) == (task_id, 2)


def test_a_client_without_a_token_keeps_working_under_the_holder_check(api):
    task_id = api.create()["task_id"]
    api.claim()
    api.heartbeat(task_id)
    api.status(task_id, "completed", as_="ops", expect=403)
    assert api.status(task_id, "completed")["task"]["status"] == "completed"


def test_the_current_token_is_accepted_in_body_and_header(api):
    task_id = api.create()["task_id"]
    token = api.claim()["lease_token"]
    api.heartbeat(task_id, lease_token=token)
    headers = {**api.headers["agent"], "X-Lease-Token": str(token)}
    assert api.call("PATCH", f"/tasks/{task_id}/status?status=completed", as_=headers)


def test_a_token_on_a_task_no_longer_running_is_lease_lost(api):
    task_id = api.create()["task_id"]
    token = api.claim()["lease_token"]
    api.status(task_id, "completed", lease_token=token)
    refused = api.cancel(task_id, expect=409, lease_token=token)
    assert refused == {"detail": "lease lost", "current_status": "completed"}


@pytest.mark.parametrize("header", ["abc", "0", "-1", "99999999999999999999"])
def test_a_malformed_lease_token_header_is_422(api, header):
    task_id = api.create()["task_id"]
    api.claim()
    headers = {**api.headers["agent"], "X-Lease-Token": header}
    api.call("POST", f"/tasks/{task_id}/heartbeat", as_=headers, expect=422)


# --- caps and Retry-After ------------------------------------------------------------------


def test_every_204_from_claim_carries_retry_after(make_app, keys):
    client = make_app(ORCHESTRATOR_AGENT_CONCURRENCY="dev_agent=1").test_client()
    idle = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["agent"])
    assert idle.status_code == 204 and 1 <= int(idle.headers["Retry-After"]) <= 5
    for _ in range(2):
        client.post("/tasks", json={"type": "bugfix", "priority": "P3"}, headers=keys["agent"])
    first = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["agent"])
    assert first.status_code == 200 and "Retry-After" not in first.headers
    capped = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["ops"])
    assert capped.status_code == 204 and int(capped.headers["Retry-After"]) >= 1
    client.patch(f"/tasks/{first.json['task_id']}/status?status=completed", headers=keys["agent"])
    again = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=keys["ops"])
    assert again.status_code == 200


def test_starting_a_task_by_patch_respects_the_agents_cap_as_a_claim_does(make_app, api):
    api = api.using(make_app(ORCHESTRATOR_AGENT_CONCURRENCY="dev_agent=1").test_client())
    held, other = api.create()["task_id"], api.create()["task_id"]
    assert api.claim()["task_id"] == held
    refused = api.status(other, "in_progress", expect=409)
    assert refused["detail"] == (
        "dev_agent already holds 1 leases, its ORCHESTRATOR_AGENT_CONCURRENCY cap; "
        "start this task when one ends"
    )
    assert refused["current_status"] == "assigned"
    assert api.task(other)["status"] == "assigned"
    assert api.stats()["queue"]["in_progress"] == 1
    api.status(held, "completed")
    assert api.status(other, "in_progress")["task"]["status"] == "in_progress"


def test_retry_after_shrinks_when_a_scheduled_task_comes_due_sooner(api):
    api.create(delay_seconds=2)
    response = api.client.post(
        "/tasks/claim", json={"agent": "dev_agent"}, headers=api.headers["agent"]
    )
    assert response.status_code == 204 and int(response.headers["Retry-After"]) <= 2


@pytest.mark.parametrize("value", ["dev_agent", "dev_agent=0", "Dev Agent=2", "dev_agent=x"])
def test_a_bad_concurrency_setting_stops_start_up(make_app, value):
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="ORCHESTRATOR_AGENT_CONCURRENCY"):
        make_app(ORCHESTRATOR_AGENT_CONCURRENCY=value)


# --- retry and redrive -----------------------------------------------------------------------


def test_retry_puts_a_failed_task_back_with_its_id_and_history(app, api, redis_server):
    task_id = api.create()["task_id"]
    api.claim()
    api.status(task_id, "failed", error="boom")
    api.call("POST", f"/tasks/{task_id}/retry", as_="agent", expect=403)
    task = api.call("POST", f"/tasks/{task_id}/retry", as_="admin")["task"]
    assert (task["task_id"], task["status"], task["retry_count"]) == (task_id, "assigned", 0)
    assert task["error"] is None and task["completed_at"] is None
    assert stream_types(redis_server.client(), app, task_id)[-1] == "task.retried"
    assert api.claim()["lease_token"] == 2  # tokens keep growing across retries
    stats = api.stats()
    assert stats["tasks"]["failed"] == 0 and stats["queue"]["failed"] == 1  # a total


@pytest.mark.parametrize("state", ["assigned", "completed"])
def test_retry_of_a_task_that_did_not_fail_is_409(api, state):
    task_id = api.create()["task_id"]
    if state == "completed":
        api.status(task_id, "completed")
    refused = api.call("POST", f"/tasks/{task_id}/retry", as_="admin", expect=409)
    assert refused["current_status"] == state


def test_retry_never_skips_a_rejected_approval(api):
    created = api.create(priority="P0")
    api.reject(created["approval_id"], reason="no")
    refused = api.call("POST", f"/tasks/{created['task_id']}/retry", as_="admin", expect=409)
    assert refused["current_status"] == "cancelled"
    redriven = api.call("POST", "/tasks/redrive", as_="admin", json={"status": "cancelled"})
    assert redriven["count"] == 0


def test_a_retried_task_waits_again_for_a_dependency_not_completed(app, api, redis_server):
    first = api.create()["task_id"]
    waiting = api.create(depends_on=[first])["task_id"]
    api.cancel(waiting)
    retried = api.call("POST", f"/tasks/{waiting}/retry", as_="admin")["task"]
    assert (retried["status"], retried["retry_count"]) == ("blocked", 0)
    assert stream_types(redis_server.client(), app, waiting)[-1] == "task.retried"
    assert api.claim()["task_id"] == first
    assert api.claim(expect=204) is None  # never before its dependency completed
    api.status(first, "completed")
    assert api.claim()["task_id"] == waiting


def test_a_retried_task_keeps_its_run_time(api):
    scheduled = api.create(delay_seconds=60)
    api.cancel(scheduled["task_id"])
    retried = api.call("POST", f"/tasks/{scheduled['task_id']}/retry", as_="admin")["task"]
    assert (retried["status"], retried["run_at"]) == ("scheduled", scheduled["task"]["run_at"])
    assert api.claim(expect=204) is None


def test_a_task_whose_dependency_failed_is_retried_after_that_dependency(api):
    first = api.create()["task_id"]
    waiting = api.create(depends_on=[first])["task_id"]
    api.status(first, "failed", error="boom")
    assert api.task(waiting)["status"] == "cancelled"
    refused = api.call("POST", f"/tasks/{waiting}/retry", as_="admin", expect=409)
    assert refused["detail"] == f"Its dependency {first} is failed; retry that task first"
    assert refused["current_status"] == "cancelled"
    redriven = api.call("POST", "/tasks/redrive", as_="admin", json={"status": "cancelled"})
    assert redriven["count"] == 0 and api.task(waiting)["status"] == "cancelled"
    api.call("POST", f"/tasks/{first}/retry", as_="admin")
    assert api.call("POST", f"/tasks/{waiting}/retry", as_="admin")["task"]["status"] == "blocked"
    api.status(first, "completed")
    assert api.task(waiting)["status"] == "assigned"


def test_redrive_filters_and_limits(api):
    failed = []
    for task_type in ("bugfix", "faq", "bugfix", "bugfix"):
        task_id = api.create(type=task_type)["task_id"]
        api.status(task_id, "failed")
        failed.append((task_type, task_id))
    cancelled = api.create()["task_id"]
    api.cancel(cancelled)
    body = {"status": "failed", "type": "bugfix", "limit": 2}
    first = api.call("POST", "/tasks/redrive", as_="admin", json=body)
    bugfixes = [task_id for task_type, task_id in failed if task_type == "bugfix"]
    assert first == {"success": True, "count": 2, "task_ids": bugfixes[:2]}
    rest = api.call("POST", "/tasks/redrive", as_="admin", json={"status": "failed"})
    assert set(rest["task_ids"]) == {bugfixes[2], failed[1][1]}
    assert api.task(cancelled)["status"] == "cancelled"
    api.call("POST", "/tasks/redrive", as_="admin", json={"status": "completed"}, expect=422)
    api.call("POST", "/tasks/redrive", as_="agent", json={"status": "failed"}, expect=403)


# --- what a waiting task waits for (for explain) ---------------------------------------------


def test_explain_names_what_a_blocked_or_scheduled_task_waits_for(make_app, api):
    # A blocked or scheduled task is not running yet: explain must say what it waits for,
    # never "nothing left to wait for" as if it had ended. A dependency that completed
    # and then expired (its TTL) is no longer waited for.
    api = api.using(make_app(ORCHESTRATOR_TASK_TTL="1").test_client())
    scheduled = api.create(delay_seconds=60)["task"]
    first, second = api.create()["task_id"], api.create()["task_id"]
    blocked = api.create(depends_on=[first, second])["task_id"]
    api.status(first, "completed")
    time.sleep(1.1)  # `first` expires
    explained = api.call("GET", f"/tasks/{scheduled['task_id']}/explain")
    assert (explained["status"], explained["waiting_for"]) == ("scheduled", "schedule")
    assert explained["details"]["schedule"]["run_at"] == scheduled["run_at"]
    assert scheduled["run_at"] in explained["summary"]
    explained = api.call("GET", f"/tasks/{blocked}/explain")
    assert (explained["status"], explained["waiting_for"]) == ("blocked", "dependencies")
    unfinished = [{"task_id": second, "status": "assigned"}]
    assert explained["details"]["dependencies"]["unfinished"] == unfinished
    assert explained["summary"] == (
        f"The task waits for 1 unfinished dependency: {second} (assigned)."
    )
