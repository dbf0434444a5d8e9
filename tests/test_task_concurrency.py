"""Many clients on several gunicorn workers: nothing lost, nothing handed out twice,
counters exact. Real Redis, real HTTP."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app import create_app
from app.domain.model import STATUSES
from tests.conftest import HEADERS
from tests.helpers import every_route, redis_keys, task_event_ids

AGENT = HEADERS["agent"]
OPS = HEADERS["ops"]
ADMIN = HEADERS["admin"]

_local = threading.local()


def session() -> requests.Session:
    """One keep-alive session per thread (requests.Session is not thread-safe)."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def post(url, headers, json=None):
    return session().post(url, json=json, headers=headers, timeout=10)


def run_in_threads(threads: int, work, items):
    """work(item) for every item, spread over `threads` threads; results in item order."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(work, items))


def recount(redis_server, server) -> dict[str, int]:
    """Tasks by status, counted from the task hashes themselves."""
    client = redis_server.client()
    every_task = redis_keys(server.env).task("*")
    found = Counter(client.hget(k, "status") for k in client.scan_iter(every_task, count=1000))
    return {state: found.get(state, 0) for state in STATUSES}


def assert_indexes_match_a_recount(redis_server, server) -> None:
    """Every index the scripts keep holds exactly what a scan of the task hashes and the
    event stream finds, and the filtered listings read through them page out the same."""
    client, key = redis_server.client(), redis_keys(server.env)
    tasks = {
        name.rsplit(":", 1)[1]: client.hmget(name, "status", "type", "assigned_to")
        for name in client.scan_iter(key.task("*"), count=1000)
    }
    for status in STATUSES:
        expected = {task_id for task_id, row in tasks.items() if row[0] == status}
        assert set(client.zrange(key.name("by_status", status), 0, -1)) == expected, status
    routes = {(row[1], row[2]) for row in tasks.values()}
    assert routes <= set(every_route(client, key))
    for route in every_route(client, key):
        expected = {task_id for task_id, row in tasks.items() if tuple(row[1:3]) == route}
        assert set(client.zrange(key.name("by_route", *route), 0, -1)) == expected, route
    events = defaultdict(list)
    for event_id, fields in client.xrange(key.name("events")):
        events[fields["task_id"]].append(event_id)
    for task_id in tasks:
        assert task_event_ids(client, key, task_id) == events[task_id]
    for filter_name, field in (("status", 0), ("type", 1), ("assigned_to", 2)):
        for value in {row[field] for row in tasks.values()}:
            listed, cursor = [], None
            while True:
                query = {filter_name: value, "limit": 100, **({"cursor": cursor} if cursor else {})}
                page = session().get(f"{server.url}/tasks", params=query, headers=ADMIN, timeout=10)
                assert page.status_code == 200, page.text
                listed += [task["task_id"] for task in page.json()["tasks"]]
                cursor = page.json()["next_cursor"]
                if not cursor:
                    break
            expected = [t for t, row in tasks.items() if row[field] == value]
            assert sorted(listed) == sorted(expected) and len(listed) == len(set(listed))


def test_concurrent_claims_hand_out_every_task_exactly_once(live_server):
    server = live_server(workers=3)
    # The 500 tasks are created in-process on the same Redis and prefix (faster than
    # HTTP); the claims are what race, over HTTP on three workers.
    loader = create_app(server.env).test_client()
    created = [
        loader.post("/tasks", json={"type": "bugfix", "priority": f"P{2 + n % 2}"}, headers=AGENT)
        for n in range(500)
    ]
    assert {response.status_code for response in created} == {201}
    task_ids = {response.json["task_id"] for response in created}

    def drain(headers):
        mine = []
        while True:
            response = post(f"{server.url}/tasks/claim", headers, {"agent": "dev_agent"})
            if response.status_code == 204:
                return mine
            assert response.status_code == 200
            assert response.json()["task"]["status"] == "in_progress"
            mine.append(response.json()["task_id"])

    claimed = run_in_threads(4, drain, [AGENT, OPS, AGENT, OPS])
    every = [task_id for mine in claimed for task_id in mine]
    assert len(every) == len(set(every)) == 500
    assert set(every) == task_ids
    assert all(claimed), "every claimer should have won some tasks"
    stats = requests.get(f"{server.url}/stats", timeout=5).json()
    assert stats["queue"]["pending"] == 0 and stats["queue"]["in_progress"] == 500


def test_concurrent_idempotent_creates_make_one_task_per_key(live_server, redis_server):
    server = live_server(workers=3)
    # 800 distinct keys, 200 of them sent a second time; shuffled so a repeat may race
    # its original on another worker.
    requests_to_send = [f"key-{n}" for n in range(800)] + [f"key-{n}" for n in range(200)]
    random.Random(5).shuffle(requests_to_send)

    def send(key):
        number = int(key.split("-")[1])
        body = {"type": "bugfix", "priority": "P3", "payload": {"n": number}}
        response = post(f"{server.url}/tasks", {**AGENT, "Idempotency-Key": key}, body)
        assert response.status_code == 201, response.text
        return key, response.json()["task_id"]

    answers = run_in_threads(8, send, requests_to_send)
    ids_by_key = defaultdict(set)
    for key, task_id in answers:
        ids_by_key[key].add(task_id)
    assert len(answers) == 1000
    assert all(len(ids) == 1 for ids in ids_by_key.values())
    assert len({task_id for _, task_id in answers}) == 800
    stats = requests.get(f"{server.url}/stats", timeout=5).json()
    assert stats["tasks"]["assigned"] == 800
    assert recount(redis_server, server)["assigned"] == 800


def test_counters_match_a_recount_after_a_mixed_workload(live_server, redis_server):
    server = live_server(workers=3)
    shared: list[str] = []  # task ids any thread may try to cancel
    outcomes = Counter()
    lock = threading.Lock()

    def worker(seed):
        rng = random.Random(seed)
        headers = AGENT if seed % 2 else OPS
        for _ in range(40):
            action = rng.choice(("create", "create", "gated", "claim", "claim", "cancel"))
            if action in ("create", "gated"):
                body = {
                    "type": rng.choice(("bugfix", "faq", "alert")),
                    "priority": "P0" if action == "gated" else "P3",
                }
                response = post(f"{server.url}/tasks", headers, body)
                assert response.status_code == 201
                with lock:
                    shared.append(response.json()["task_id"])
            elif action == "claim":
                agent = rng.choice(("dev_agent", "faq_agent", "ops_agent"))
                response = post(f"{server.url}/tasks/claim", headers, {"agent": agent})
                if response.status_code == 204:
                    continue
                task_id, status = response.json()["task_id"], rng.choice(("completed", "failed"))
                response = session().patch(
                    f"{server.url}/tasks/{task_id}/status",
                    json={"status": status},
                    headers=headers,
                    timeout=10,
                )
                # Another thread may have cancelled it in between: then 409, never lost.
                assert response.status_code in (200, 409)
                if response.status_code == 200:
                    with lock:
                        outcomes[status] += 1
            else:
                with lock:
                    task_id = rng.choice(shared) if shared else None
                if task_id:
                    response = post(f"{server.url}/tasks/{task_id}/cancel", headers)
                    assert response.status_code in (200, 409)
                    if response.status_code == 200:
                        with lock:
                            outcomes["cancelled"] += 1

    run_in_threads(6, worker, range(6))
    stats = requests.get(f"{server.url}/stats", timeout=5).json()
    counted = recount(redis_server, server)
    assert stats["tasks"] == counted
    assert sum(counted.values()) == len(shared)
    for status in ("completed", "failed", "cancelled"):
        assert counted[status] == stats["queue"][status] == outcomes[status]
    assert stats["queue"]["pending"] == counted["assigned"] == sum(stats["agents"].values())
    assert stats["approvals"]["pending"] == counted["awaiting_approval"]
    assert_indexes_match_a_recount(redis_server, server)


NOT_TERMINAL = ("blocked", "awaiting_approval", "scheduled", "assigned", "in_progress")


@pytest.mark.slow
def test_with_schedules_dependencies_and_expiries_every_task_ends_once(live_server, redis_server):
    server = live_server(workers=3)
    shared: list[str] = []
    lock = threading.Lock()

    def worker(seed):
        rng = random.Random(seed)
        headers = AGENT if seed % 2 else OPS
        for _ in range(40):
            action = rng.choice(
                ("create", "delayed", "dependent", "gated", "claim", "claim", "claim", "cancel")
            )
            if action == "claim":
                agent = rng.choice(("dev_agent", "faq_agent"))
                response = post(
                    f"{server.url}/tasks/claim", headers, {"agent": agent, "lease_seconds": 1}
                )
                if response.status_code == 204:
                    continue
                fate = rng.choice(("completed", "completed", "failed", "abandon"))
                if fate != "abandon":  # an abandoned lease expires: requeued or failed
                    response = session().patch(
                        f"{server.url}/tasks/{response.json()['task_id']}/status",
                        json={"status": fate, "lease_token": response.json()["lease_token"]},
                        headers=headers,
                        timeout=10,
                    )
                    assert response.status_code in (200, 409)
            elif action == "cancel":
                with lock:
                    task_id = rng.choice(shared) if shared else None
                if task_id:
                    response = post(f"{server.url}/tasks/{task_id}/cancel", headers)
                    assert response.status_code in (200, 409)
            else:
                body = {"type": rng.choice(("bugfix", "faq")), "priority": "P3", "max_retries": 1}
                if action == "gated":
                    body["priority"] = "P0"
                if action == "delayed":
                    body["delay_seconds"] = rng.choice((0, 1))
                if action == "dependent":
                    with lock:
                        body["depends_on"] = rng.sample(shared, min(len(shared), 2))
                response = post(f"{server.url}/tasks", headers, body)
                assert response.status_code == 201, response.text
                with lock:
                    shared.append(response.json()["task_id"])

    run_in_threads(6, worker, range(6))

    # Drain: approve what waits at the gate, finish what is queued, until all have ended.
    deadline = time.monotonic() + 60
    while True:
        stats = requests.get(f"{server.url}/stats", timeout=5).json()
        if not any(stats["tasks"][state] for state in NOT_TERMINAL):
            break
        assert time.monotonic() < deadline, stats["tasks"]
        pending = session().get(f"{server.url}/approvals/pending", headers=ADMIN, timeout=5)
        for approval in pending.json()["approvals"]:
            post(f"{server.url}/approvals/{approval['approval_id']}/approve", ADMIN)
        for agent in ("dev_agent", "faq_agent"):
            response = post(f"{server.url}/tasks/claim", AGENT, {"agent": agent})
            while response.status_code == 200:
                task_id = response.json()["task_id"]
                path = f"{server.url}/tasks/{task_id}/status"
                session().patch(path, json={"status": "completed"}, headers=AGENT, timeout=10)
                response = post(f"{server.url}/tasks/claim", AGENT, {"agent": agent})
        time.sleep(0.3)

    counted = recount(redis_server, server)
    stats = requests.get(f"{server.url}/stats", timeout=5).json()
    assert stats["tasks"] == counted
    assert sum(counted.values()) == len(shared)
    for status in ("completed", "failed", "cancelled"):
        assert counted[status] == stats["queue"][status]
    endings = Counter()
    for _, fields in redis_server.client().xrange(redis_keys(server.env).name("events")):
        if fields["type"] in ("task.completed", "task.failed", "task.cancelled"):
            endings[fields["task_id"]] += 1
    assert set(endings) == set(shared) and set(endings.values()) == {1}
    assert_indexes_match_a_recount(redis_server, server)
