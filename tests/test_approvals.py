"""The HITL gate on a real Redis: gated tasks wait, decisions, four eyes, expiry, history."""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import datetime

import pytest

from tests.conftest import PRINCIPALS, mint_token
from tests.helpers import redis_keys

CREATOR, APPROVER = PRINCIPALS["agent"], PRINCIPALS["ops"]
UNKNOWN = "apr-00000000-0000-4000-8000-000000000000"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def gated(api, **body) -> tuple[str, str]:
    """Create a P0 task as `agent` (so `ops` may decide it); returns (task_id, approval_id)."""
    created = api.create(**{"priority": "P0", **body})
    assert created["task"]["status"] == "awaiting_approval"
    return created["task_id"], created["approval_id"]


def event_types(api, task_id) -> list[str]:
    return [event["event_type"] for event in api.events(task_id=task_id, order="asc")["events"]]


def listed(api, which: str, **query) -> list[str]:
    body = api.call("GET", f"/approvals/{which}", query_string=query)
    assert body["count"] == len(body["approvals"])
    return [entry["approval_id"] for entry in body["approvals"]]


def raw(app, redis_server, kind: str, ident: str) -> dict:
    """A record straight from Redis, without any script settling it first."""
    return redis_server.client().hgetall(redis_keys(app).name(kind, ident))


# --- the record -----------------------------------------------------------------------


def test_gated_create_opens_a_complete_approval_record(api):
    task_id, approval_id = gated(api, type="deploy", priority="P1")
    record = api.approval(approval_id)
    assert approval_id == f"apr-{task_id}"
    # Every field, and no other: the two times are checked on their own.
    assert record | {"requested_at": None, "expires_at": None} == {
        "approval_id": approval_id,
        "task_id": task_id,
        "task_type": "deploy",
        "priority": "P1",
        "reason": "priority P1; deploy to production",
        "status": "pending",
        "requested_by": CREATOR,
        "requested_at": None,
        "expires_at": None,
        "decided_by": None,
        "decided_at": None,
        "rejection_reason": None,
        "comment": None,
        "requested_by_act": None,
        "decided_by_act": None,
        "approved_by": None,
        "approved_at": None,
        # The policy fields: without a policy, one approval by the approver role.
        "policy": None,
        "required_approvals": 1,
        "approvals": [],
        "eligible": ["role:agent"],
        "payload_version": 1,
        "payload_sha256": hashlib.sha256(b"{}").hexdigest(),
        "escalated": False,
    }
    requested = datetime.fromisoformat(record["requested_at"])
    assert (datetime.fromisoformat(record["expires_at"]) - requested).total_seconds() == 86400
    assert api.task(task_id)["approval_id"] == approval_id
    assert event_types(api, task_id) == [
        "task.created",
        "task.awaiting_approval",
        "approval.requested",
    ]


def test_pending_lists_oldest_first(api):
    created = [gated(api)[1] for _ in range(3)]
    api.create()  # not gated
    assert listed(api, "pending") == created


def test_idempotent_replay_opens_no_second_approval(client, keys, api):
    headers = {**keys["agent"], "Idempotency-Key": "gate-once"}
    first = client.post("/tasks", json={"type": "deploy"}, headers=headers)
    again = client.post("/tasks", json={"type": "deploy"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json["approval_id"] == first.json["approval_id"]
    assert listed(api, "pending") == [first.json["approval_id"]]


# --- the gate holds ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["in_progress", "completed", "failed", "assigned"])
def test_gated_task_can_be_neither_claimed_nor_moved(api, status):
    task_id, approval_id = gated(api)
    api.claim(as_="ops", expect=204)
    for kwargs in ({"query_string": {"status": status}}, {"json": {"status": status}}):
        path = f"/tasks/{task_id}/status"
        refused = api.call("PATCH", path, as_="ops", expect=409, **kwargs)
        assert refused["current_status"] == "awaiting_approval"
    assert api.task(task_id)["status"] == "awaiting_approval"
    assert api.approval(approval_id)["status"] == "pending"
    api.claim(as_="ops", expect=204)


# --- decisions ---------------------------------------------------------------------------


def test_approve_queues_the_task(api):
    task_id, approval_id = gated(api)
    body = api.approve(approval_id, as_="ops", comment="lgtm")
    assert body["success"] is True
    assert body["task"]["status"] == "assigned"
    record = body["approval"]
    assert (record["status"], record["decided_by"], record["comment"]) == (
        "approved",
        APPROVER,
        "lgtm",
    )
    assert record["rejection_reason"] is None and ISO_UTC.match(record["decided_at"])
    assert api.approval(approval_id) == record
    assert listed(api, "pending") == []
    assert listed(api, "history") == [approval_id]
    claimed = api.claim(as_="ops")
    assert (claimed["task_id"], claimed["task"]["status"]) == (task_id, "in_progress")
    assert event_types(api, task_id) == [
        "task.created",
        "task.awaiting_approval",
        "approval.requested",
        "approval.approved",
        "task.assigned",
        "task.in_progress",
    ]


@pytest.mark.parametrize("where", ["query", "json"])
def test_reject_cancels_the_task_with_the_reason(api, where):
    task_id, approval_id = gated(api)
    reason = "too risky on a Friday"
    kwargs = (
        {"query_string": {"reason": reason}}
        if where == "query"
        else {"json": {"reason": reason, "comment": "see #42"}}
    )
    body = api.call("POST", f"/approvals/{approval_id}/reject", as_="ops", **kwargs)
    record, cancelled = body["approval"], body["task"]
    assert (record["status"], record["decided_by"], record["rejection_reason"]) == (
        "rejected",
        APPROVER,
        reason,
    )
    assert record["comment"] == ("see #42" if where == "json" else None)
    assert cancelled["status"] == "cancelled" and reason in cancelled["error"]
    assert api.task(task_id) == cancelled
    api.claim(as_="ops", expect=204)
    assert event_types(api, task_id)[-2:] == ["approval.rejected", "task.cancelled"]


def test_reject_without_reason_says_so(api):
    task_id, approval_id = gated(api)
    assert api.reject(approval_id)["approval"]["rejection_reason"] == "no reason given"
    assert api.task(task_id)["error"] == "approval rejected: no reason given"


def test_comment_from_query_on_approve(api):
    _, approval_id = gated(api)
    path = f"/approvals/{approval_id}/approve"
    api.call("POST", path, as_="ops", query_string={"comment": "ship it"})
    assert api.approval(approval_id)["comment"] == "ship it"


@pytest.mark.parametrize(
    ("verb", "field", "where"),
    [
        ("reject", "reason", "query"),
        ("reject", "reason", "json"),
        ("reject", "comment", "json"),
        ("approve", "comment", "json"),
    ],
)
def test_text_over_1000_characters_is_422(api, verb, field, where):
    _, approval_id = gated(api)
    path = f"/approvals/{approval_id}/{verb}"
    where = "query_string" if where == "query" else "json"
    refused = api.call("POST", path, as_="ops", expect=422, **{where: {field: "x" * 1001}})
    assert field in refused["errors"]
    assert api.approval(approval_id)["status"] == "pending"
    api.call("POST", path, as_="ops", **{where: {field: "x" * 1000}})


def test_approve_rejects_unknown_fields(api):
    _, approval_id = gated(api)
    assert "approver" in api.approve(approval_id, expect=422, approver="me")["errors"]


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_approved_by_and_approved_at_alias_the_decision(api, decision):
    _, approval_id = gated(api)
    record = api.decide(approval_id, decision)["approval"]
    assert record["decided_by"] == APPROVER and ISO_UTC.match(record["decided_at"])
    if decision == "approve":
        assert (record["approved_by"], record["approved_at"]) == (APPROVER, record["decided_at"])
    else:
        assert record["approved_by"] is None and record["approved_at"] is None


# --- who may decide ----------------------------------------------------------------------


def test_creator_cannot_approve_but_may_withdraw(api):
    task_id, approval_id = gated(api)
    refused = api.approve(approval_id, as_="agent", expect=403)
    assert "four-eyes" in refused["detail"]
    assert api.approval(approval_id)["status"] == "pending"
    assert api.task(task_id)["status"] == "awaiting_approval"
    withdrawn = api.reject(approval_id, as_="agent", reason="filed by mistake")
    assert withdrawn["approval"]["decided_by"] == CREATOR
    assert withdrawn["task"]["status"] == "cancelled"


def test_creator_is_the_principal_not_the_credential(api, tokens):
    """A token for the creator's own principal is still the creator."""
    _, approval_id = gated(api)
    same_principal = {"Authorization": f"Bearer {mint_token(CREATOR, 'admin')}"}
    api.approve(approval_id, as_=same_principal, expect=403)
    api.approve(approval_id, as_=tokens["agent"])


@pytest.mark.parametrize("sub", ["someone-else", "APIKEY:ADMIN", "ApiKey:Admin"])
def test_one_principal_counts_once_whichever_credential_it_decides_with(make_app, api, sub):
    """N of M counts people, as four eyes compares them: a token an admin minted for
    another subject (its `act` names the admin) or for its own id in another case is
    still the admin, so the admin's own approval cannot be the second one."""
    rule = {"name": "two", "match": {"types": ["deploy"]}, "required": 2,
            "approvers": ["role:admin"]}  # fmt: skip
    api = api.using(make_app(ORCHESTRATOR_APPROVAL_POLICY=json.dumps([rule])).test_client())
    task_id, approval_id = gated(api, type="deploy", priority="P2")
    token = api.call("POST", "/auth/token", as_="admin", json={"sub": sub, "role": "admin"})
    minted = {"Authorization": f"Bearer {token['access_token']}"}
    assert api.approve(approval_id, as_=minted)["approval"]["status"] == "pending"
    again = api.approve(approval_id, as_="admin", expect=409)
    assert again["current_status"] == "pending" and "already approved" in again["detail"]
    assert [a["by"] for a in api.approval(approval_id)["approvals"]] == [sub]
    assert api.task(task_id)["status"] == "awaiting_approval"
    # A second person does release it.
    other = {"Authorization": f"Bearer {mint_token('second-admin', 'admin')}"}
    assert api.approve(approval_id, as_=other)["task"]["status"] == "assigned"


def test_each_approval_keeps_who_acted_behind_it(make_app, api):
    """N of M's receipt names the minter behind every approval, not only the closing one."""
    rule = {"name": "two", "match": {"types": ["deploy"]}, "required": 2,
            "approvers": ["role:admin"]}  # fmt: skip
    api = api.using(make_app(ORCHESTRATOR_APPROVAL_POLICY=json.dumps([rule])).test_client())
    _, approval_id = gated(api, type="deploy", priority="P2")
    token = api.call("POST", "/auth/token", as_="admin", json={"sub": "bob", "role": "admin"})
    api.approve(approval_id, as_={"Authorization": f"Bearer {token['access_token']}"})
    direct = {"Authorization": f"Bearer {mint_token('second-admin', 'admin')}"}
    api.approve(approval_id, as_=direct)
    given = api.approval(approval_id)["approvals"]
    assert [(a["by"], a["act"]) for a in given] == [
        ("bob", [PRINCIPALS["admin"]]),
        ("second-admin", None),
    ]


@pytest.mark.parametrize(
    ("approver_role", "who", "status"),
    [
        ("agent", "user", 403),
        ("agent", "ops", 200),
        ("agent", "admin", 200),
        ("admin", "ops", 403),
        ("admin", "admin", 200),
    ],
)
@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_approver_role_sets_the_lowest_role_that_decides(
    make_app, api, approver_role, who, status, verb
):
    api = api.using(make_app(ORCHESTRATOR_APPROVER_ROLE=approver_role).test_client())
    _, approval_id = gated(api)
    api.decide(approval_id, verb, as_=who, expect=status)
    decided = {"approve": "approved", "reject": "rejected"}[verb]
    assert api.approval(approval_id)["status"] == ("pending" if status == 403 else decided)


def test_deciding_needs_credentials(client, api):
    _, approval_id = gated(api)
    response = client.post(f"/approvals/{approval_id}/approve")
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


# --- exactly once ---------------------------------------------------------------------


@pytest.mark.parametrize("first", ["approve", "reject"])
@pytest.mark.parametrize("second", ["approve", "reject"])
def test_second_decision_is_409_with_current_state(api, first, second):
    task_id, approval_id = gated(api)
    api.decide(approval_id, first)
    before = api.task(task_id)
    refused = api.decide(approval_id, second, as_="admin", expect=409)
    status = {"approve": "approved", "reject": "rejected"}[first]
    assert refused["current_status"] == status
    assert refused["approval"]["status"] == status
    assert refused["approval"]["decided_by"] == APPROVER
    assert api.task(task_id) == before


def test_cancelling_a_gated_task_withdraws_its_approval(api):
    task_id, approval_id = gated(api)
    cancelled = api.cancel(task_id, as_="ops", reason="no longer needed")
    assert cancelled["task"]["status"] == "cancelled"
    assert listed(api, "pending") == []
    assert listed(api, "history") == [approval_id]
    record = api.approval(approval_id)
    assert (record["status"], record["decided_by"], record["rejection_reason"]) == (
        "rejected",
        APPROVER,
        "no longer needed",
    )
    assert api.approve(approval_id, as_="admin", expect=409)["current_status"] == "rejected"
    assert event_types(api, task_id)[-2:] == ["approval.rejected", "task.cancelled"]


# --- not found ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "approval_id",
    [
        UNKNOWN,
        "nope",
        UNKNOWN.removeprefix("apr-"),
        UNKNOWN.upper(),
        "apr-1",
        "apr-00000000-0000-4000-8000-000000000000x",
    ],
)
@pytest.mark.parametrize(
    ("method", "suffix", "role"),
    [
        ("get", "", "user"),
        ("post", "/approve", "ops"),
        ("post", "/reject", "ops"),
    ],
)
def test_unknown_or_malformed_id_is_404(client, keys, approval_id, method, suffix, role):
    response = getattr(client, method)(f"/approvals/{approval_id}{suffix}", headers=keys[role])
    assert response.status_code == 404
    assert response.json == {"detail": "Approval not found"}


# --- expiry --------------------------------------------------------------------------------


def _touch_approve(api, app, approval_id):
    assert api.approve(approval_id, expect=409)["current_status"] == "timeout"


def _touch_reject(api, app, approval_id):
    assert api.reject(approval_id, expect=409, reason="late")["current_status"] == "timeout"


def _touch_get(api, app, approval_id):
    assert api.approval(approval_id)["status"] == "timeout"


def _touch_pending(api, app, approval_id):
    assert listed(api, "pending") == []


def _touch_stats(api, app, approval_id):
    assert api.stats()["approvals"] == {"pending": 0}


def _touch_sweep(api, app, approval_id):
    result = app.test_cli_runner().invoke(args=["sweep"])
    assert result.exit_code == 0, result.output
    assert "0 still due" in result.output


@pytest.mark.parametrize(
    "first_touch",
    [
        _touch_approve,
        _touch_reject,
        _touch_get,
        _touch_pending,
        _touch_stats,
        _touch_sweep,
    ],
    ids=lambda touch: touch.__name__.removeprefix("_touch_"),
)
def test_expiry_applies_on_whatever_comes_first(make_app, redis_server, api, first_touch):
    app = make_app(ORCHESTRATOR_APPROVAL_TIMEOUT="1")
    api = api.using(app.test_client())
    task_id, approval_id = gated(api)
    time.sleep(1.1)
    # Nothing runs in the background: until something touches Redis it is still pending.
    assert raw(app, redis_server, "approval", approval_id)["status"] == "pending"
    first_touch(api, app, approval_id)
    stored = raw(app, redis_server, "approval", approval_id)
    assert stored["status"] == "timeout" and "decided_by" not in stored
    assert raw(app, redis_server, "task", task_id)["status"] == "cancelled"

    record = api.approval(approval_id)
    assert record["status"] == "timeout" and ISO_UTC.match(record["decided_at"])
    expired = api.task(task_id)
    assert (expired["status"], expired["error"]) == ("cancelled", "approval timed out")
    assert api.approve(approval_id, expect=409)["current_status"] == "timeout"
    api.claim(as_="ops", expect=204)
    assert listed(api, "history") == [approval_id]
    assert event_types(api, task_id)[-2:] == ["approval.timeout", "task.cancelled"]


def test_expiry_beyond_one_settle_round_is_still_applied(make_app, api):
    """More approvals fall due than one request settles (100): the one asked about and
    every one listed are timed out all the same."""
    api = api.using(make_app(ORCHESTRATOR_APPROVAL_TIMEOUT="1").test_client())
    approval_ids = [gated(api)[1] for _ in range(105)]
    time.sleep(1.1)
    assert api.approve(approval_ids[-1], expect=409)["current_status"] == "timeout"
    assert listed(api, "pending") == []
    assert api.approval(approval_ids[-2])["status"] == "timeout"


def test_an_escalation_whose_extra_time_also_passed_times_out_at_once(make_app, api):
    """Nobody called during the timeout nor the escalation's extra time, and more fell due
    than one request settles (100): the approval asked about is escalated and timed out
    in the same step, so one eligible only through the escalation cannot release it."""
    rule = {"name": "flags", "match": {"types": ["feature"]}, "required": 1,
            "approvers": ["apikey:ops"], "timeout": 1,
            "on_timeout": {"escalate_to": ["role:admin"], "extend": 1}}  # fmt: skip
    app = make_app(ORCHESTRATOR_APPROVAL_POLICY=json.dumps([rule]))
    api = api.using(app.test_client())
    created = [api.create(type="feature") for _ in range(101)]
    task_id, approval_id = created[-1]["task_id"], created[-1]["approval_id"]
    time.sleep(2.1)
    assert api.approve(approval_id, as_="admin", expect=409)["current_status"] == "timeout"
    record = api.approval(approval_id)
    assert (record["status"], record["escalated"]) == ("timeout", True)
    expired = api.task(task_id)
    assert (expired["status"], expired["error"], expired["approval"]) == (
        "cancelled",
        "approval timed out",
        None,
    )
    assert event_types(api, task_id)[-3:] == [
        "approval.escalated",
        "approval.timeout",
        "task.cancelled",
    ]


def test_an_expired_approval_is_applied_to_its_task_whatever_one_settle_reached(make_app, api):
    """More approvals fell due than two requests settle (100 each): the task a request
    names still has its approval's timeout applied first, so it is read as cancelled and
    a cancel finds it ended, rather than closing the expired approval as rejected."""
    rule = {"name": "flags", "match": {"types": ["feature"]}, "required": 1,
            "approvers": ["apikey:ops"], "timeout": 3}  # fmt: skip
    app = make_app(ORCHESTRATOR_APPROVAL_POLICY=json.dumps([rule]))
    api = api.using(app.test_client())
    created = [api.create(type="feature") for _ in range(203)]
    time.sleep(3.1)
    last, next_to_last = created[-1], created[-2]
    refused = api.cancel(last["task_id"], expect=409)
    assert refused["current_status"] == "cancelled"
    assert api.approval(last["approval_id"])["status"] == "timeout"
    task = api.task(next_to_last["task_id"])
    assert (task["status"], task["error"]) == ("cancelled", "approval timed out")


def test_pending_approvals_are_in_the_order_they_were_asked_for(api):
    """A gated task held back by a dependency asks for approval when released, after a
    gated task created later: the pending list and /health's oldest age follow the asks."""
    dependency = api.create()["task_id"]
    held = api.create(priority="P0", depends_on=[dependency])["task_id"]
    _, asked_first = gated(api)
    time.sleep(0.05)
    api.status(dependency, "completed")
    asked_later = api.task(held)["approval_id"]
    assert listed(api, "pending") == [asked_first, asked_later]
    # The first ask has waited at least the 50 ms slept; the later one, a moment.
    assert api.health()["oldest_approval_seconds"] >= 0.05


# --- history ---------------------------------------------------------------------------


def test_history_is_newest_first_capped_and_limited(make_app, api):
    api = api.using(make_app(ORCHESTRATOR_MAX_APPROVAL_HISTORY="3").test_client())
    decided = []
    for i in range(5):
        _, approval_id = gated(api)
        api.decide(approval_id, "approve" if i % 2 else "reject")
        decided.append(approval_id)
    newest_first = decided[::-1]
    assert listed(api, "history") == newest_first[:3]
    assert listed(api, "history", limit=2) == newest_first[:2]
    assert listed(api, "history", limit=1000) == newest_first[:3]
    # Entries beyond the cap are gone entirely, not only from the listing.
    api.call("GET", f"/approvals/{decided[0]}", expect=404)
    assert api.approval(decided[2])["status"] == "rejected"


def test_history_default_limit_is_100(api):
    decided = []
    for _ in range(101):
        _, approval_id = gated(api)
        api.reject(approval_id)
        decided.append(approval_id)
    assert listed(api, "history") == decided[::-1][:100]


@pytest.mark.parametrize("limit", ["0", "-1", "abc"])
def test_history_limit_must_be_a_positive_number(client, keys, limit):
    response = client.get(f"/approvals/history?limit={limit}", headers=keys["user"])
    assert response.status_code == 422
    assert "limit" in response.json["errors"]


def test_history_entries_expire_after_their_ttl(make_app, api):
    api = api.using(make_app(ORCHESTRATOR_APPROVAL_HISTORY_TTL="1").test_client())
    task_id, approval_id = gated(api)
    api.approve(approval_id)
    assert listed(api, "history") == [approval_id]
    time.sleep(1.1)
    api.call("GET", f"/approvals/{approval_id}", expect=404)
    assert listed(api, "history") == []
    assert api.task(task_id)["status"] == "assigned"  # the task lives on


# --- readers and counters ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/approvals/pending",
        "/approvals/history",
        f"/approvals/{UNKNOWN}",
    ],
)
def test_reading_needs_credentials(client, path):
    response = client.get(path)
    assert response.status_code == 401


def test_stats_and_health_count_pending_approvals(api):
    _, first = gated(api)
    gated(api, type="deploy")
    api.create()
    stats = api.stats()
    assert stats["approvals"] == {"pending": 2}
    assert stats["tasks"]["awaiting_approval"] == 2
    assert (stats["queue"]["awaiting_approval"], stats["queue"]["pending"]) == (2, 1)
    health = api.health()
    assert (health["queue_stats"]["awaiting_approval"], health["approvals_pending"]) == (2, 2)
    api.approve(first)
    stats = api.stats()
    assert stats["approvals"] == {"pending": 1}
    assert (stats["queue"]["awaiting_approval"], stats["queue"]["pending"]) == (1, 2)
    health = api.health()
    assert (health["queue_stats"]["awaiting_approval"], health["approvals_pending"]) == (1, 1)


# --- across instances and restarts --------------------------------------------------------


def test_instances_sharing_redis_share_the_gate(make_app, api):
    prefix = "shared-gate-" + str(time.time_ns())
    one = api.using(make_app(ORCHESTRATOR_QUEUE_PREFIX=prefix).test_client())
    two = api.using(make_app(ORCHESTRATOR_QUEUE_PREFIX=prefix).test_client())
    task_id, approval_id = gated(one)
    two.claim(as_="ops", expect=204)
    assert listed(two, "pending") == [approval_id]
    two.approve(approval_id)
    one.reject(approval_id, as_="admin", expect=409)
    assert one.claim(as_="ops")["task_id"] == task_id


def test_gate_survives_a_redis_restart(make_app, own_redis, api):
    api = api.using(make_app(redis_url=own_redis.url).test_client())
    task_id, approval_id = gated(api)
    own_redis.stop()
    own_redis.start()
    api.claim(as_="ops", expect=204)
    assert api.task(task_id)["status"] == "awaiting_approval"
    assert listed(api, "pending") == [approval_id]
    api.approve(approval_id)
    assert api.claim(as_="ops")["task_id"] == task_id
