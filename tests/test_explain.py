"""GET /tasks/<id>/explain on a live gunicorn: what a task waits for, in each state."""

from __future__ import annotations

import re
import time

import pytest

from app.domain.explain import duration
from tests.policy_helpers import Live, policy_env


@pytest.fixture(scope="module")
def live(module_live_server):
    return Live(module_live_server(workers=2, **policy_env()).url)


def test_waiting_for_approvals_counts_down(live):
    created = live.create(type="deploy", payload={"version": "3"})
    task_id, approval_id = created["task_id"], created["approval_id"]
    first = live.explain(task_id)
    assert (first["task_id"], first["status"], first["waiting_for"]) == (
        task_id,
        "awaiting_approval",
        "approval",
    )
    assert re.fullmatch(
        r"Waiting for 2 more approvals from group sre; expires in (23 h 59 min|1 d)\.",
        first["summary"],
    ), first["summary"]
    live.approve(approval_id, "sre-1")
    second = live.explain(task_id)
    assert second["summary"].startswith("Waiting for 1 more approval from group sre; expires in")
    facts = second["details"]["approval"]
    assert facts | {"expires_at": None, "expires_in_seconds": None, "payload_sha256": None} == {
        "approval_id": approval_id,
        "status": "pending",
        "policy": "production-deploys",
        "received": 1,
        "required": 2,
        "approved_by": ["sre-1"],
        "can_act": ["group:sre"],
        "expires_at": None,
        "expires_in_seconds": None,
        "escalated": False,
        "escalation": None,
        "payload_version": 1,
        "payload_sha256": None,
    }
    assert 86000 < facts["expires_in_seconds"] <= 86400
    assert facts["payload_sha256"] == live.approval(approval_id)["payload_sha256"]


def test_a_named_principal_leaves_can_act_once_it_approved(live):
    created = live.create(type="bugfix", priority="P0")  # urgent-fixes: apikey:ops
    explained = live.explain(created["task_id"])
    assert explained["details"]["approval"]["can_act"] == ["apikey:ops"]
    assert explained["summary"].startswith("Waiting for 1 more approval from apikey:ops; expires")


def test_an_escalation_to_come_is_part_of_the_answer(live):
    created = live.create(type="feature")  # feature-flags: 3 s, then admins for 3 s more
    explained = live.explain(created["task_id"])
    assert explained["details"]["approval"]["escalation"] == {
        "escalate_to": ["role:admin"],
        "extend_seconds": 3,
    }
    assert re.fullmatch(
        r"Waiting for 1 more approval from group web; expires in [23] s, then escalates to "
        r"any admin \(or higher role\)\.",
        explained["summary"],
    ), explained["summary"]


def test_queued_running_and_finished(live):
    ids = [live.create(type="bugfix", priority="P3")["task_id"] for _ in range(3)]
    third = live.explain(ids[2])
    assert third["waiting_for"] == "agent"
    assert third["details"]["agent"] == {
        "agent": "dev_agent",
        "queue_position": 3,
        "ahead": 2,
        "queued": 3,
    }
    assert third["summary"] == "Queued for dev_agent at position 3, 2 tasks ahead."
    assert live.explain(ids[0])["summary"] == (
        "Next in line for dev_agent: waiting for it to claim a task."
    )
    claimed = live.call("POST", "/tasks/claim", "agent", json={"agent": "dev_agent"})
    running = live.explain(claimed["task_id"])
    assert running["waiting_for"] == "lease"
    lease = running["details"]["lease"]
    assert (lease["holder"], lease["expires_at"]) == (
        "apikey:agent",
        claimed["task"]["lease_expires_at"],
    )
    assert running["summary"].startswith("Running under apikey:agent's lease, which expires in")
    assert live.explain(ids[2])["details"]["agent"]["ahead"] == 1
    live.call("PATCH", f"/tasks/{ids[0]}/status", "agent", json={"status": "completed"})
    done = live.explain(ids[0])
    assert (done["waiting_for"], done["details"]["outcome"]["status"]) == (None, "completed")
    assert done["summary"].startswith("Completed at ")


def test_a_rejected_task_says_why_and_keeps_its_approval(live):
    created = live.create(type="deploy")
    live.reject(created["approval_id"], "sre-2", reason="freeze week")
    explained = live.explain(created["task_id"])
    assert explained["waiting_for"] is None and explained["status"] == "cancelled"
    assert explained["summary"].endswith(
        ": approval rejected: freeze week; nothing left to wait for."
    )
    assert explained["details"]["approval"]["status"] == "rejected"


def test_unknown_task_is_404(live):
    assert live.call("GET", "/tasks/not-a-task/explain", expect=404) == {"detail": "Task not found"}
    live.call("GET", "/tasks/00000000-0000-4000-8000-000000000000/explain", expect=404)
    live.call("GET", "/tasks/00000000-0000-4000-8000-000000000000/explain", as_=None, expect=401)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (45, "45 s"), (60, "1 min"), (7800, "2 h 10 min"), (7200, "2 h"),
     (90000, "1 d 1 h"), (86400, "1 d")],
)  # fmt: skip
def test_durations_read_like_a_person_would_say_them(seconds, text):
    assert duration(seconds) == text


def test_failed_and_timed_out_tasks_say_how_they_ended(live):
    task_id = live.create(type="investigate", priority="P3")["task_id"]
    claimed = live.call("POST", "/tasks/claim", "agent", json={"agent": "dev_agent"})
    while claimed["task_id"] != task_id:  # earlier tests' leftovers in the queue
        claimed = live.call("POST", "/tasks/claim", "agent", json={"agent": "dev_agent"})
    body = {"status": "failed", "error": "repo unreachable"}
    live.call("PATCH", f"/tasks/{task_id}/status", "agent", json=body)
    failed = live.explain(task_id)
    assert (failed["waiting_for"], failed["details"]["outcome"]["error"]) == (
        None,
        "repo unreachable",
    )
    assert failed["summary"].startswith("Failed at ") and "repo unreachable" in failed["summary"]
    timed_out = live.create(type="bugfix", priority="P0")["task_id"]  # urgent-fixes: 2 s
    time.sleep(2.1)
    explained = live.explain(timed_out)
    assert (explained["status"], explained["details"]["approval"]["status"]) == (
        "cancelled",
        "timeout",
    )
    assert explained["summary"].endswith(": approval timed out; nothing left to wait for.")
