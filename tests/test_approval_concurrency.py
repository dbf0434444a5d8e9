"""Racing decisions on a live gunicorn with several workers: exactly one wins."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.conftest import HEADERS, mint_token

DECIDERS = 20
ROUNDS = 5
CREATOR = HEADERS["agent"]  # principal apikey:agent
READER = HEADERS["user"]
# Twenty distinct agent principals, none of them the creator.
DECIDER_HEADERS = [
    {"Authorization": f"Bearer {mint_token(f'decider-{i}', 'agent')}"} for i in range(DECIDERS)
]


def race(url: str, approval_id: str) -> list[tuple[str, requests.Response]]:
    """Fire DECIDERS decisions (half approve, half reject) at once; (verb, response) each."""
    barrier = threading.Barrier(DECIDERS)

    def one(i: int):
        verb = "approve" if i % 2 == 0 else "reject"
        kwargs = {"json": {"reason": f"no from decider-{i}"}} if verb == "reject" else {}
        with requests.Session() as session:
            barrier.wait(timeout=10)
            return verb, session.post(
                f"{url}/approvals/{approval_id}/{verb}",
                headers=DECIDER_HEADERS[i],
                timeout=15,
                **kwargs,
            )

    with ThreadPoolExecutor(max_workers=DECIDERS) as pool:
        return list(pool.map(one, range(DECIDERS)))


def test_exactly_one_decision_wins_across_workers(live_server):
    server = live_server(workers=3)
    url = server.url
    for _ in range(ROUNDS):
        created = requests.post(
            f"{url}/tasks", json={"type": "bugfix", "priority": "P0"}, headers=CREATOR, timeout=5
        )
        assert created.status_code == 201, created.text
        task_id, approval_id = created.json()["task_id"], created.json()["approval_id"]

        results = race(url, approval_id)
        winners = [(verb, r) for verb, r in results if r.status_code == 200]
        losers = [r for _, r in results if r.status_code != 200]
        assert len(winners) == 1, [r.status_code for _, r in results]
        assert [r.status_code for r in losers] == [409] * (DECIDERS - 1)
        verb, won = winners[0]
        status = {"approve": "approved", "reject": "rejected"}[verb]
        decided_by = won.json()["approval"]["decided_by"]
        assert decided_by.startswith("decider-")
        # Every loser saw the same, final state: the winner's decision.
        assert {r.json()["current_status"] for r in losers} == {status}
        assert {r.json()["approval"]["decided_by"] for r in losers} == {decided_by}

        record = requests.get(f"{url}/approvals/{approval_id}", headers=READER, timeout=5)
        assert (record.json()["status"], record.json()["decided_by"]) == (status, decided_by)
        stored = requests.get(f"{url}/tasks/{task_id}", headers=READER, timeout=5).json()["task"]
        claimed = requests.post(
            f"{url}/tasks/claim", json={"agent": "dev_agent"}, headers=DECIDER_HEADERS[0], timeout=5
        )
        if verb == "approve":
            assert stored["status"] == "assigned"
            assert claimed.status_code == 200 and claimed.json()["task_id"] == task_id
        else:
            assert stored["status"] == "cancelled"
            assert stored["error"] == f"approval rejected: no from {decided_by}"
            assert claimed.status_code == 204
        events = requests.get(
            f"{url}/events", params={"task_id": task_id, "order": "asc"}, headers=READER, timeout=5
        ).json()["events"]
        decisions = [
            e["event_type"]
            for e in events
            if e["event_type"]
            in ("approval.approved", "approval.rejected", "task.assigned", "task.cancelled")
        ]
        assert decisions == (
            [f"approval.{status}", "task.assigned" if verb == "approve" else "task.cancelled"]
        )
    assert requests.get(f"{url}/approvals/pending", headers=READER, timeout=5).json() == {
        "success": True,
        "count": 0,
        "approvals": [],
    }
    history = requests.get(f"{url}/approvals/history", headers=READER, timeout=5).json()
    assert history["count"] == ROUNDS
