"""The queue agents lean on, against a live gunicorn with real Redis: run times by Redis'
clock, dependency chains, stale fencing tokens, concurrency caps, redrive."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from app import create_app
from tests.conftest import HEADERS
from tests.helpers import parse_time, redis_keys
from tests.test_task_concurrency import post, run_in_threads

AGENT, OPS, ADMIN = HEADERS["agent"], HEADERS["ops"], HEADERS["admin"]


def redis_ms(client) -> int:
    """Redis' clock in epoch milliseconds: the clock every script reads."""
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def ms(stamp: str) -> int:
    return int(parse_time(stamp).timestamp() * 1000)


def claim(server, headers=AGENT, agent="dev_agent", **body):
    return post(f"{server.url}/tasks/claim", headers, {"agent": agent, **body})


def patch(server, task_id, status, headers=AGENT, **extra):
    return requests.patch(
        f"{server.url}/tasks/{task_id}/status",
        json={"status": status},
        headers={**headers, **extra},
        timeout=10,
    )


def create(server, headers=AGENT, **body):
    response = post(f"{server.url}/tasks", headers, {"type": "bugfix", "priority": "P3", **body})
    assert response.status_code == 201, response.text
    return response.json()["task"]


def test_a_scheduled_task_is_claimable_right_after_run_at_and_not_before(live_server, redis_server):
    server = live_server(workers=2)
    clock = redis_server.client()
    run_at = redis_ms(clock) + 1500
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(run_at // 1000))
    task = create(server, run_at=f"{stamp}.{run_at % 1000:03d}Z")
    assert (task["status"], ms(task["run_at"])) == ("scheduled", run_at)
    refusals_before = []
    while True:
        asked = redis_ms(clock)
        response = claim(server)
        if response.status_code == 204:
            # Refused only while Redis' clock had not reached run_at when we asked.
            assert asked < run_at, f"not claimable {redis_ms(clock) - run_at} ms after run_at"
            assert int(response.headers["Retry-After"]) >= 1
            refusals_before.append(run_at - asked)
            time.sleep(0.02)
            continue
        assert response.status_code == 200
        started = ms(response.json()["task"]["started_at"])
        break
    assert response.json()["task_id"] == task["task_id"]
    assert started >= run_at, "claimed before its run time"
    assert started - run_at < 1000, "claimable right after run_at"
    assert min(refusals_before) < 500, "refused a moment before run_at"


def test_a_chain_runs_in_order_and_a_failure_cancels_the_rest(live_server):
    server = live_server(workers=2)
    a = create(server)["task_id"]
    b = create(server, depends_on=[a])["task_id"]
    c = create(server, depends_on=[b])["task_id"]
    for task_id in (a, b, c):
        response = claim(server)
        assert response.status_code == 200 and response.json()["task_id"] == task_id
        # Its dependant stays blocked while it runs: nothing else can be claimed.
        assert claim(server, OPS).status_code == 204
        assert patch(server, task_id, "completed").status_code == 200

    a = create(server)["task_id"]
    b = create(server, depends_on=[a])["task_id"]
    c = create(server, depends_on=[b])["task_id"]
    assert claim(server).json()["task_id"] == a
    assert patch(server, a, "failed").status_code == 200
    tasks = {
        t: requests.get(f"{server.url}/tasks/{t}", headers=AGENT, timeout=5).json()["task"]
        for t in (b, c)
    }
    assert (tasks[b]["status"], tasks[b]["error"]) == ("cancelled", f"dependency {a} failed")
    assert (tasks[c]["status"], tasks[c]["error"]) == ("cancelled", f"dependency {b} cancelled")
    assert claim(server).status_code == 204


def test_a_stale_token_is_refused_after_expiry_and_a_reclaim_by_the_same_principal(live_server):
    server = live_server(workers=2)
    task_id = create(server)["task_id"]
    old = claim(server, lease_seconds=1).json()["lease_token"]
    time.sleep(1.1)
    again = claim(server).json()
    assert again["task_id"] == task_id and again["lease_token"] > old
    lost = {"detail": "lease lost", "current_status": "in_progress"}
    beat = post(f"{server.url}/tasks/{task_id}/heartbeat", AGENT, {"lease_token": old})
    assert (beat.status_code, beat.json()) == (409, lost)
    report = patch(server, task_id, "completed", **{"X-Lease-Token": str(old)})
    assert (report.status_code, report.json()) == (409, lost)
    cancel = post(f"{server.url}/tasks/{task_id}/cancel", AGENT, {"lease_token": old})
    assert (cancel.status_code, cancel.json()) == (409, lost)
    done = patch(server, task_id, "completed", **{"X-Lease-Token": str(again["lease_token"])})
    assert done.status_code == 200 and done.json()["task"]["status"] == "completed"


@pytest.mark.slow
def test_with_a_cap_of_two_four_claimers_never_hold_more_than_two(live_server, redis_server):
    server = live_server(workers=3, ORCHESTRATOR_AGENT_CONCURRENCY="dev_agent=2")
    task_ids = {create(server)["task_id"] for _ in range(24)}
    capped = []
    lock = threading.Lock()

    def work(headers):
        done = []
        while True:
            response = claim(server, headers)
            if response.status_code == 204:
                assert int(response.headers["Retry-After"]) >= 1
                with lock:
                    capped.append(1)
                with lock:
                    if len(task_ids) == 0:
                        return done
                time.sleep(0.05)
                continue
            task_id = response.json()["task_id"]
            time.sleep(0.1)  # hold the lease a while
            assert patch(server, task_id, "completed", headers).status_code == 200
            with lock:
                task_ids.discard(task_id)
            done.append(task_id)

    finished = run_in_threads(4, work, [AGENT, OPS, AGENT, OPS])
    assert sum(len(d) for d in finished) == 24 and capped
    # The leases as Redis recorded them: [started_at, completed_at) never overlap > 2.
    spans = []
    for task_id in (t for d in finished for t in d):
        task = requests.get(f"{server.url}/tasks/{task_id}", headers=AGENT, timeout=5).json()
        spans += [(ms(task["task"]["started_at"]), 1), (ms(task["task"]["completed_at"]), -1)]
    held, most = 0, 0
    for _, change in sorted(spans):  # at equal times the end (-1) sorts first
        held += change
        most = max(most, held)
    assert most == 2
    running = redis_server.client().hget(redis_keys(server.env).name("running"), "dev_agent")
    assert running == "0"


@pytest.mark.slow
def test_redrive_of_500_failed_tasks_requeues_exactly_those(live_server):
    server = live_server(workers=2)
    loader = create_app(server.env).test_client()

    def make(status):
        task_id = loader.post("/tasks", json={"type": "bugfix"}, headers=AGENT).json["task_id"]
        loader.patch(f"/tasks/{task_id}/status?status={status}", headers=AGENT)
        return task_id

    failed = {make("failed") for _ in range(500)}
    others = [make(status) for status in ("completed", "cancelled") for _ in range(20)]
    faq = loader.post("/tasks", json={"type": "faq"}, headers=AGENT).json["task_id"]
    loader.patch(f"/tasks/{faq}/status?status=failed", headers=AGENT)
    body = {"status": "failed", "assigned_to": "dev_agent", "limit": 1000}
    response = post(f"{server.url}/tasks/redrive", ADMIN, body)
    assert response.status_code == 200
    assert response.json()["count"] == 500 and set(response.json()["task_ids"]) == failed
    stats = requests.get(f"{server.url}/stats", timeout=5).json()
    assert stats["tasks"]["assigned"] == stats["agents"]["dev_agent"] == 500
    assert stats["tasks"]["failed"] == 1  # the faq task, filtered out
    for task_id in others:
        assert loader.get(f"/tasks/{task_id}", headers=AGENT).json["task"]["status"] != "assigned"
    again = post(f"{server.url}/tasks/redrive", ADMIN, body).json()
    assert again["count"] == 0
