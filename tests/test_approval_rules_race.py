"""N of M under a race, across two service instances on one Redis: the first two
eligible approvals count, the task is released once, every other answer is 409 or 403."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.policy_helpers import SRE, Live, bearer, policy_env

DECIDERS = 20
ROUNDS = 3
# Ten members of group sre (eligible) and ten agents outside it.
PEOPLE = [*SRE, *(f"outsider-{i}" for i in range(10))]


def race(urls: list[str], approval_id: str) -> list[tuple[str, requests.Response]]:
    """Everyone approves at once, alternating between the instances."""
    barrier = threading.Barrier(DECIDERS)

    def one(i: int):
        with requests.Session() as session:
            barrier.wait(timeout=10)
            return PEOPLE[i], session.post(
                f"{urls[i % 2]}/approvals/{approval_id}/approve",
                headers=bearer(PEOPLE[i]),
                timeout=15,
            )

    with ThreadPoolExecutor(max_workers=DECIDERS) as pool:
        return list(pool.map(one, range(DECIDERS)))


def test_two_of_twenty_count_across_two_instances(live_server):
    env = policy_env(ORCHESTRATOR_QUEUE_PREFIX=f"race{uuid.uuid4().hex[:8]}")
    one, two = live_server(workers=2, **env), live_server(workers=2, **env)
    live = Live(one.url)
    for _ in range(ROUNDS):
        created = live.create(type="deploy", payload={"version": "9"})
        task_id, approval_id = created["task_id"], created["approval_id"]
        results = race([one.url, two.url], approval_id)
        counted = [who for who, r in results if r.status_code == 200]
        assert len(counted) == 2 and set(counted) <= set(SRE), [
            (who, r.status_code) for who, r in results
        ]
        for who, response in results:
            if who in counted:
                continue
            # An outsider is refused (403) while the approval is open; once it closed,
            # everyone learns it is decided (409), as without a policy.
            assert response.status_code in ((403, 409) if who.startswith("out") else (409,))
            if response.status_code == 409:
                assert response.json()["current_status"] == "approved", response.text
            else:
                assert "not among the approvers" in response.json()["detail"]
        record = Live(two.url).approval(approval_id)
        # The order they count in is the order the approvals list keeps.
        assert record["status"] == "approved"
        assert sorted(a["by"] for a in record["approvals"]) == sorted(counted)
        task = live.task(task_id)
        assert task["status"] == "assigned"
        assert task["approval"]["approved_by"] == [a["by"] for a in record["approvals"]]
        types = [e["event_type"] for e in live.events(task_id)]
        assert types.count("approval.approved") == 1 and types.count("task.assigned") == 1
    assert live.call("GET", "/approvals/pending")["count"] == 0
