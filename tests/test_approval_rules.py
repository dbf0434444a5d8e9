"""Approval policies on a live gunicorn with real Redis: rules, groups, N of M, edits,
receipts, every 403/409, escalation then timeout."""

from __future__ import annotations

import time

import pytest

from harness.processes import wait_until
from tests.helpers import Api, parse_time, redis_keys
from tests.policy_helpers import Live, policy_env, sha256_of


@pytest.fixture(scope="module")
def live(module_live_server):
    return Live(module_live_server(workers=2, **policy_env()).url)


def gated(live: Live, as_: str = "agent", **body) -> tuple[str, str]:
    created = live.create(as_, **body)
    assert created["task"]["status"] == "awaiting_approval", created
    return created["task_id"], created["approval_id"]


def drain(live: Live, agent: str = "ops_agent") -> None:
    """Claim whatever other tests left in the agent's queue (the server is shared)."""
    while live.call("POST", "/tasks/claim", "agent", None, json={"agent": agent}):
        pass


def deploy(live: Live, payload=None, as_: str = "agent") -> tuple[str, str]:
    return gated(live, as_, type="deploy", priority="P2", payload=payload or {"version": "1.2"})


# --- which rule: each match field, and the HITL rules beneath --------------------------


@pytest.mark.parametrize(
    ("body", "policy", "required", "eligible"),
    [
        ({"type": "deploy", "payload": {"environment": "production"}}, "production-deploys", 2,
         ["group:sre"]),
        ({"type": "deployment"}, "production-deploys", 2, ["group:sre"]),  # absent = production
        ({"type": "feature", "payload": {"environment": "staging"}}, "feature-flags", 1,
         ["group:web"]),
        ({"type": "bugfix", "priority": "P0"}, "urgent-fixes", 1, ["apikey:ops"]),
        ({"type": "refactor", "payload": {"environment": "staging"}}, "staging-refactors", 1,
         ["role:admin"]),
        # No rule matches, the HITL rules still gate it: one approval by the approver role.
        ({"type": "bugfix", "priority": "P1"}, None, 1, ["role:agent"]),
        ({"type": "refactor", "payload": {"environment": "production"}}, None, 1,
         ["role:agent"]),
    ],
)  # fmt: skip
def test_each_rule_field_picks_the_rule(live, body, policy, required, eligible):
    _, approval_id = gated(live, **body)
    record = live.approval(approval_id)
    assert (record["policy"], record["required_approvals"], record["eligible"]) == (
        policy,
        required,
        eligible,
    )
    assert record["reason"].startswith("policy ") == (policy is not None)
    if policy:
        assert record["reason"].startswith(f"policy {policy}")
    assert record["payload_sha256"] == sha256_of(body.get("payload", {}))
    assert (record["approvals"], record["payload_version"], record["escalated"]) == ([], 1, False)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "deploy", "payload": {"environment": "staging"}},  # no rule, no HITL rule
        {"type": "bugfix", "priority": "P3"},
    ],
)
def test_tasks_no_rule_and_no_hitl_rule_gate_run_at_once(live, body):
    assert live.create(**body)["task"]["status"] == "assigned"


def test_rule_timeout_sets_the_expiry(live):
    _, approval_id = gated(live, type="bugfix", priority="P0")
    record = live.approval(approval_id)
    assert parse_time(record["expires_at"]) - parse_time(record["requested_at"]) == (
        parse_time("2000-01-01T00:00:02Z") - parse_time("2000-01-01T00:00:00Z")
    )


# --- N of M and who may decide -------------------------------------------------------


def test_two_of_the_group_release_once_with_a_receipt(live):
    payload = {"version": "2.0", "note": "café ✓", "replicas": 3}
    task_id, approval_id = deploy(live, payload)
    drain(live)
    first = live.approve(approval_id, "sre-1", comment="looks fine")
    assert first["approval"]["status"] == "pending" and first["task"]["status"] == (
        "awaiting_approval"
    )
    assert [(a["by"], a["comment"]) for a in first["approval"]["approvals"]] == [
        ("sre-1", "looks fine")
    ]
    assert live.call("POST", "/tasks/claim", "agent", 204, json={"agent": "ops_agent"}) is None
    second = live.approve(approval_id, "sre-2")
    assert second["approval"]["status"] == "approved"
    assert second["task"]["status"] == "assigned"
    receipt = second["task"]["approval"]
    assert receipt["approved_by"] == ["sre-1", "sre-2"]
    assert receipt["approval_id"] == approval_id
    # The agent checks what it runs against what people approved, on its own.
    claimed = live.call("POST", "/tasks/claim", "agent", json={"agent": "ops_agent"})["task"]
    assert claimed["task_id"] == task_id and claimed["payload"] == payload
    assert claimed["approval"]["payload_sha256"] == sha256_of(claimed["payload"])
    assert claimed["approval"] == receipt
    types = [e["event_type"] for e in live.events(task_id)]
    assert types.count("approval.approved") == 1 and types.count("task.assigned") == 1


def test_refusals(live):
    task_id, approval_id = deploy(live, as_="sre-0")  # the creator is in the group
    four_eyes = live.approve(approval_id, "sre-0", 403)
    assert "four-eyes" in four_eyes["detail"]
    assert "not among the approvers" in live.approve(approval_id, "ops", 403)["detail"]
    assert "not among the approvers" in live.reject(approval_id, "ops", 403, reason="no")["detail"]
    live.approve(approval_id, "sre-3")
    twice = live.approve(approval_id, "sre-3", 409)
    assert twice["current_status"] == "pending" and "already approved" in twice["detail"]
    stale = live.approve(approval_id, "sre-4", 409, payload_sha256=sha256_of({"other": 1}))
    assert "payload changed" in stale["detail"]
    missing = live.reject(approval_id, "sre-4", 422)
    assert missing["errors"] == {"reason": ["Missing data for required field."]}
    assert live.approval(approval_id)["approvals"][0]["by"] == "sre-3"  # nothing counted
    # One eligible rejection rejects, whatever approvals came before.
    rejected = live.reject(approval_id, "sre-4", reason="wrong window", comment="Friday")
    assert (rejected["approval"]["status"], rejected["task"]["status"]) == ("rejected", "cancelled")
    assert rejected["task"]["error"] == "approval rejected: wrong window"
    assert live.approve(approval_id, "sre-5", 409)["current_status"] == "rejected"
    assert live.task(task_id)["approval"] is None  # no receipt for what was not approved


def test_principal_and_role_specs(live):
    _, approval_id = gated(live, type="bugfix", priority="P0")  # apikey:ops only
    live.approve(approval_id, "sre-1", 403)
    assert live.approve(approval_id, "ops")["approval"]["status"] == "approved"
    _, approval_id = gated(live, type="refactor", payload={"environment": "staging"})
    live.approve(approval_id, "ops", 403)  # role:admin and an agent asks
    assert live.approve(approval_id, "admin")["task"]["approval"]["approved_by"] == ["apikey:admin"]
    # ORCHESTRATOR_GROUP_WEB lists an API-key principal: group:web lets it in, not sre-1.
    _, approval_id = gated(live, type="feature")
    live.approve(approval_id, "sre-1", 403)
    assert live.approve(approval_id, "ops")["approval"]["status"] == "approved"


# --- approve with edits --------------------------------------------------------------


def test_an_edit_replaces_the_payload_and_restarts_the_count(live):
    old = {"version": "1.2", "replicas": 3, "region": "eu"}
    new = {"version": "1.2.1", "replicas": 3, "canary": True}
    task_id, approval_id = deploy(live, old)
    live.approve(approval_id, "sre-1")
    edited = live.approve(approval_id, "sre-2", payload=new, comment="patch release instead")
    record = edited["approval"]
    assert record["status"] == "pending" and record["payload_version"] == 2
    assert [a["by"] for a in record["approvals"]] == ["sre-2"]  # sre-1 approved the old one
    assert record["payload_sha256"] == sha256_of(new)
    assert live.task(task_id)["payload"] == new
    (event,) = live.events(task_id, "approval.edited")
    assert event["payload"] | {"approval_id": None, "task_id": None} == {
        "approval_id": None,
        "task_id": None,
        "edited_by": "sre-2",
        "payload_version": 2,
        "old_payload_sha256": sha256_of(old),
        "new_payload_sha256": sha256_of(new),
        "changed_keys": ["canary", "region", "version"],
    }
    assert live.task(task_id)["updated_at"] == event["timestamp"]  # the edit changed it
    live.approve(approval_id, "sre-2", 409)  # the editor's approval already counts
    # sre-1 may approve again: its approval was of a payload that no longer exists.
    done = live.approve(approval_id, "sre-1", payload_sha256=sha256_of(new))
    assert done["task"]["approval"] == {
        "approval_id": approval_id,
        "approved_by": ["sre-2", "sre-1"],
        "payload_sha256": sha256_of(new),
        "decided_at": done["approval"]["decided_at"],
    }


def test_an_edit_whose_task_is_gone_from_redis_writes_no_bare_task(make_app, redis_server, keys):
    """A task deleted or evicted under its pending approval: the edit is kept on the
    approval, and no hash holding only a payload appears where the task was."""
    app = make_app()
    api = Api(app.test_client(), keys)
    created = api.create(priority="P1", payload={"version": "1.2"})  # gated by default
    stored = redis_keys(app).task(created["task_id"])
    client = redis_server.client()
    assert client.delete(stored) == 1
    new = {"version": "1.2.1"}
    edited = api.approve(created["approval_id"], payload=new)
    assert edited["approval"]["payload_sha256"] == sha256_of(new)
    assert (edited["task"], edited["message"]) == (None, "Approval approved; task is gone")
    assert client.exists(stored) == 0


# --- escalation, then timeout --------------------------------------------------------


def _until_status(live: Live, approval_id: str, status: str, timeout: float) -> dict:
    return wait_until(
        lambda: (r := live.approval(approval_id))["status"] == status and r, timeout, 0.2
    )


@pytest.mark.slow
def test_escalation_once_then_timeout(live):
    task_id, approval_id = gated(live, type="feature", payload={"flag": "new-checkout"})
    live.approve(approval_id, "admin", 403)  # not yet: admins come in on escalation
    first = live.approval(approval_id)
    escalated = wait_until(lambda: (r := live.approval(approval_id))["escalated"] and r, 6, 0.2)
    assert escalated["status"] == "pending"
    assert escalated["eligible"] == ["group:web", "role:admin"]
    moved = parse_time(escalated["expires_at"]) - parse_time(first["expires_at"])
    assert moved.total_seconds() == 3
    assert live.task(task_id)["status"] == "awaiting_approval"
    timed_out = _until_status(live, approval_id, "timeout", 6)
    assert timed_out["escalated"] is True
    task = live.task(task_id)
    assert (task["status"], task["error"]) == ("cancelled", "approval timed out")
    types = [e["event_type"] for e in live.events(task_id)]
    assert types.count("approval.escalated") == 1 and types[-2:] == [
        "approval.timeout",
        "task.cancelled",
    ]
    (event,) = live.events(task_id, "approval.escalated")
    assert event["payload"]["escalate_to"] == ["role:admin"]


@pytest.mark.slow
def test_after_escalation_the_escalation_specs_may_decide(live):
    _, approval_id = gated(live, type="feature")
    wait_until(lambda: live.approval(approval_id)["escalated"], 6, 0.2)
    assert live.approve(approval_id, "admin")["task"]["status"] == "assigned"


def test_without_escalation_a_timeout_cancels(live):
    task_id, approval_id = gated(live, type="bugfix", priority="P0")
    time.sleep(2.1)
    record = live.approval(approval_id)
    assert (record["status"], record["escalated"]) == ("timeout", False)
    assert live.approve(approval_id, "ops", 409)["current_status"] == "timeout"
    assert live.events(task_id, "approval.escalated") == []


@pytest.mark.slow
def test_the_sweep_command_escalates_then_times_out(make_app, redis_server, keys):
    """No request at all: cron's `flask sweep` applies the escalation, then the timeout."""
    app = make_app(**policy_env())
    api = Api(app.test_client(), keys)
    approval_id = api.create(type="feature")["approval_id"]
    stored = redis_keys(app).name("approval", approval_id)
    for status, escalated in (("pending", "1"), ("timeout", "1")):
        time.sleep(3.1)
        assert app.test_cli_runner().invoke(args=["sweep"]).exit_code == 0
        raw = redis_server.client().hgetall(stored)  # as stored: no script settles it here
        assert (raw["status"], raw["escalated"]) == (status, escalated)
