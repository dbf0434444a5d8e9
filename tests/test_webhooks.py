"""Webhook subscriptions, the delivery log, fan-out, signatures, Slack messages and SSRF."""

from __future__ import annotations

import json
import re
import time

import pytest
import redis
from standardwebhooks.webhooks import Webhook

from app.decision_links import DecisionLinks
from app.delivery import transport
from app.delivery.messages import build_request, slack_message
from app.delivery.worker import backoff_ms
from app.domain.delivery import Attempt
from app.domain.destinations import refused_address, url_problem
from tests.helpers import Api, redis_keys
from tests.receiver import signature_valid

HOOK = {"url": "https://hooks.example.com/in", "events": ["task.*"]}


@pytest.fixture
def admin_api(api):
    return api


def subscribe(api, expect=201, **body):
    return api.call("POST", "/webhooks", as_="admin", expect=expect, json={**HOOK, **body})


def test_create_shows_the_secret_once_and_stores_it_sealed(app, api, redis_server):
    created = subscribe(api, description="ops")
    assert created["secret"].startswith("whsec_") and created["webhook_id"].startswith("wh_")
    listed = api.call("GET", "/webhooks", as_="admin")
    assert listed["count"] == 1 and "secret" not in listed["webhooks"][0]
    one = api.call("GET", f"/webhooks/{created['webhook_id']}", as_="admin")
    assert one["events"] == ["task.*"] and "secret" not in one
    client = redis_server.client()
    dump = json.dumps(
        [
            client.hgetall(k)
            for k in client.keys(f"{redis_keys(app).prefix}:*")
            if client.type(k) == "hash"
        ]
    )
    assert created["secret"] not in dump
    assert created["secret"].removeprefix("whsec_") not in dump


@pytest.mark.parametrize("role", ["agent", "user"])
def test_only_admins_manage_webhooks(api, role):
    subscribe(api, expect=None)
    api.call("POST", "/webhooks", as_=role, expect=403, json=HOOK)
    api.call("GET", "/webhooks", as_=role, expect=403)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://224.0.0.1/x",
        "http://0.0.0.0/x",
        "ftp://example.com/x",
        "file:///etc/passwd",
        "https://user:pw@example.com/x",
    ],
)
def test_private_and_odd_urls_are_refused_at_registration(api, url):
    body = api.call("POST", "/webhooks", as_="admin", expect=422, json={**HOOK, "url": url})
    assert "url" in body["errors"]


def test_private_literals_are_allowed_when_configured(make_app, api):
    allowed = api.using(make_app(ORCHESTRATOR_WEBHOOK_ALLOW_PRIVATE="true").test_client())
    subscribe(allowed, url="http://127.0.0.1:9/x")


def test_allow_private_is_refused_in_production():
    from app.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="ORCHESTRATOR_WEBHOOK_ALLOW_PRIVATE"):
        Settings.from_env(
            {
                "ENVIRONMENT": "production",
                "ORCHESTRATOR_JWT_SECRET": "x" * 40,
                "REDIS_URL": "redis://r:6379/0",
                "ORCHESTRATOR_WEBHOOK_ALLOW_PRIVATE": "true",
            }
        )


def test_approvers_need_a_public_url(make_app, api):
    body = subscribe(api, expect=422, approvers=["apikey:ops"])
    assert "ORCHESTRATOR_PUBLIC_URL" in body["detail"]
    with_url = api.using(make_app(ORCHESTRATOR_PUBLIC_URL="https://orch.example.com").test_client())
    assert subscribe(with_url, approvers=["apikey:ops"])["approvers"] == ["apikey:ops"]


def test_bad_event_filters_are_422(api):
    for events in ([], ["Task.Created"], ["task.*.x"], ["**"]):
        subscribe(api, expect=422, events=events)


def test_delete_test_send_and_retry(api):
    hook = subscribe(api)
    wid = hook["webhook_id"]
    sent = api.call("POST", f"/webhooks/{wid}/test", as_="admin", expect=202)
    assert sent["event_type"] == "webhook.test" and sent["status"] == "pending"
    listed = api.call("GET", f"/webhooks/{wid}/deliveries", as_="admin")
    assert [d["delivery_id"] for d in listed["deliveries"]] == [sent["delivery_id"]]
    path = f"/webhooks/{wid}/deliveries/{sent['delivery_id']}/retry"
    assert api.call("POST", path, as_="admin", expect=202)["status"] == "pending"
    api.call("POST", f"/webhooks/{wid}/deliveries/dlv_{'0' * 24}/retry", as_="admin", expect=404)
    api.call("DELETE", f"/webhooks/{wid}", as_="admin", expect=204)
    api.call("GET", f"/webhooks/{wid}", as_="admin", expect=404)
    api.call("GET", "/webhooks/not-an-id", as_="admin", expect=404)


def test_events_fan_out_to_matching_subscriptions_once(app, api):
    queue = app.extensions["orchestrator.services"].deliveries
    tasks_hook = subscribe(api, events=["task.created"])
    every_hook = subscribe(api, events=["*"])
    approvals_hook = subscribe(api, events=["approval.*"])
    api.create()
    entries = queue.read_new("c1", 100, 0)
    assert queue.fan_out(entries) == 1 + 2  # task.created to one; created+assigned to `*`
    assert queue.fan_out(entries) == 0  # the same entries again: no new deliveries
    count = {
        hook["webhook_id"]: api.call(
            "GET", f"/webhooks/{hook['webhook_id']}/deliveries", as_="admin"
        )["count"]
        for hook in (tasks_hook, every_hook, approvals_hook)
    }
    assert list(count.values()) == [1, 2, 0]
    assert app.extensions["orchestrator.services"].stats.read()["webhooks"]["unacknowledged"] == 0


def test_entries_of_a_dead_deliverer_are_reclaimed(make_app, api):
    app = make_app(ORCHESTRATOR_WEBHOOK_RECLAIM_SECONDS="1")
    api = api.using(app.test_client())
    queue = app.extensions["orchestrator.services"].deliveries
    subscribe(api, events=["task.created"])
    api.create()
    assert queue.read_new("dies", 100, 0)  # read, never fanned out: its deliverer died
    assert queue.reclaim("survivor", 100) == []  # not idle long enough yet
    time.sleep(1.1)
    assert queue.fan_out(queue.reclaim("survivor", 100)) == 1
    attempts, now = queue.claim(10)
    assert len(attempts) == 1 and attempts[0].number == 1 and attempts[0].secret


def attempt(secret, event_type="task.failed", payload=None, fmt="standard", approvers=()):
    envelope = {
        "event_id": "1-0",
        "event_type": event_type,
        "task_id": "t1",
        "priority": "high",
        "payload": payload or {},
        "timestamp": "2026-01-01T00:00:00Z",
    }
    return Attempt(
        {"delivery_id": "dlv_" + "a" * 24, "attempts": "1", "data": json.dumps(envelope)},
        {"format": fmt, "approvers": json.dumps(list(approvers)), "url": "https://x"},
        secret,
    )


def test_signatures_verify_independently_and_with_the_library(app):
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    now = int(time.time())
    body, headers = build_request(
        attempt(secret), DecisionLinks(app.extensions["orchestrator.settings"]), now
    )
    assert headers["webhook-id"] == "dlv_" + "a" * 24 and headers["webhook-timestamp"] == str(now)
    assert signature_valid(secret, headers, body)
    assert not signature_valid(secret, headers, body + b" ")
    verified = Webhook(secret).verify(body, headers)
    assert verified["type"] == "task.failed" and verified["data"]["event_id"] == "1-0"


def test_slack_messages_carry_task_reason_requester_expiry_and_links(make_app):
    settings = make_app(ORCHESTRATOR_PUBLIC_URL="https://orch.example.com").extensions[
        "orchestrator.settings"
    ]
    links = DecisionLinks(settings)
    payload = {
        "approval_id": "apr-1",
        "reason": "priority P0",
        "requested_by": "apikey:agent",
        "expires_at": "2026-01-02T00:00:00Z",
    }
    item = attempt(None, "approval.requested", payload, "slack", ["apikey:ops"])
    body, headers = build_request(item, links, 0)
    assert "webhook-signature" not in headers
    message = json.loads(body)
    text = json.dumps(message)
    for fact in ("priority P0", "apikey:agent", "2026-01-02T00:00:00Z", "t1", "/decisions/"):
        assert fact in text
    buttons = message["blocks"][-1]["elements"]
    assert [b["text"]["text"] for b in buttons] == ["Approve as apikey:ops", "Reject as apikey:ops"]
    failed = slack_message(
        {
            "event_type": "task.failed",
            "task_id": "t9",
            "payload": {"error": "boom <b>", "assigned_to": "dev_agent"},
        }
    )
    assert failed["text"] == "Task t9 failed: boom <b>" and "&lt;b&gt;" in json.dumps(failed)


def test_decision_links_are_deterministic_and_tamper_evident(make_app):
    settings = make_app(ORCHESTRATOR_PUBLIC_URL="https://o.example.com").extensions[
        "orchestrator.settings"
    ]
    links = DecisionLinks(settings)
    url = links.url("apr-x", "apikey:ops", "approve")
    assert url == links.url("apr-x", "apikey:ops", "approve")
    token = url.rsplit("/", 1)[1]
    assert links.read(token).principal == "apikey:ops"
    assert links.read(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]) is None


def test_addresses_are_checked_after_resolution():
    assert refused_address("127.0.0.1") and refused_address("::1")
    assert refused_address("100.64.0.1")  # carrier-grade NAT: not public
    assert refused_address("93.184.215.14") is None
    with pytest.raises(transport.Refused, match="loopback"):
        transport.resolve("localhost", 80, allow_private=False)
    assert transport.resolve("localhost", 80, allow_private=True)
    assert url_problem("http://localhost:1/x", allow_private=False) is None  # a name


def test_backoff_follows_the_schedule_with_jitter():
    schedule = (5, 30, 120)
    assert 4000 <= backoff_ms(schedule, 1) <= 6000
    assert 24000 <= backoff_ms(schedule, 2) <= 36000
    assert 96000 <= backoff_ms(schedule, 9) <= 144000


def test_subscriptions_add_no_redis_work_to_creating_a_task(make_app, own_redis, keys):
    """The API's side of delivery is the XADD it already does: same commands either way."""

    def commands_of_one_create(subscribed: bool) -> dict:
        app = make_app(redis_url=own_redis.url)
        api = Api(app.test_client(), keys)
        if subscribed:
            subscribe(api, events=["*"])
        api.create()  # connects and loads the scripts
        probe = own_redis.client()
        probe.config_resetstat()
        api.create()
        stats = {k: v["calls"] for k, v in probe.info("commandstats").items()}
        stats.pop("cmdstat_config|resetstat", None)
        return stats

    assert commands_of_one_create(True) == commands_of_one_create(False)


def test_a_link_expires_with_its_approval(make_app, api):
    app = make_app(ORCHESTRATOR_APPROVAL_TIMEOUT="1", ORCHESTRATOR_PUBLIC_URL="http://localhost")
    api = api.using(app.test_client())
    approval_id = api.create(priority="P0")["approval_id"]
    links = DecisionLinks(app.extensions["orchestrator.settings"])
    path = links.url(approval_id, "apikey:ops", "approve").removeprefix("http://localhost")
    assert api.client.get(path).status_code == 200
    time.sleep(1.1)
    page = api.client.get(path)
    assert page.status_code == 410 and "timed out" in page.get_data(as_text=True)
    assert api.client.post(path).status_code == 409
    assert api.approval(approval_id)["status"] == "timeout"


def test_a_link_whose_decision_redis_failed_is_not_spent(make_app, api, monkeypatch):
    """Redis failing between marking the link used and deciding leaves nothing decided,
    so the link still works (it once stayed 'already used' until its mark expired)."""
    app = make_app(ORCHESTRATOR_PUBLIC_URL="http://localhost")
    api = api.using(app.test_client())
    approval_id = api.create(priority="P0")["approval_id"]
    links = DecisionLinks(app.extensions["orchestrator.settings"])
    path = links.url(approval_id, "apikey:ops", "approve").removeprefix("http://localhost")
    gate = app.extensions["orchestrator.services"].approvals

    def redis_gone(**_named):
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(gate.scripts, "decide_approval", redis_gone)
    assert api.client.post(path).status_code == 503
    assert api.approval(approval_id)["status"] == "pending"
    monkeypatch.undo()
    assert api.client.get(path).status_code == 200
    assert api.client.post(path).status_code == 200
    assert api.approval(approval_id)["status"] == "approved"
    assert api.client.post(path).status_code == 409  # and now it is spent


def test_a_link_approves_the_payload_its_page_showed(make_app, api):
    """An edit made after the page was shown refuses the decision; the link stays usable
    and a fresh page approves the edited payload."""
    rule = {"name": "two", "match": {"types": ["deploy"]}, "required": 2,
            "approvers": ["apikey:ops", "apikey:admin"]}  # fmt: skip
    app = make_app(
        ORCHESTRATOR_PUBLIC_URL="http://localhost",
        ORCHESTRATOR_APPROVAL_POLICY=json.dumps([rule]),
    )
    api = api.using(app.test_client())
    created = api.create(type="deploy", priority="P1", payload={"v": 1})
    links = DecisionLinks(app.extensions["orchestrator.settings"])
    url = links.url(created["approval_id"], "apikey:ops", "approve")
    path = url.removeprefix("http://localhost")
    page = api.client.get(path).get_data(as_text=True)
    assert "&#34;v&#34;: 1" in page or '"v": 1' in page  # the payload it approves
    shown = re.search(r'name="payload_sha256" value="([0-9a-f]{64})"', page).group(1)
    api.approve(created["approval_id"], as_="admin", payload={"v": 2})
    refused = api.client.post(path, data={"payload_sha256": shown})
    assert refused.status_code == 409 and "Nothing changed" in refused.get_data(as_text=True)
    assert len(api.approval(created["approval_id"])["approvals"]) == 1  # admin's alone
    fresh = api.client.get(path).get_data(as_text=True)
    current = re.search(r'name="payload_sha256" value="([0-9a-f]{64})"', fresh).group(1)
    assert api.client.post(path, data={"payload_sha256": current}).status_code == 200
    task = api.task(created["task_id"])
    assert (task["status"], task["payload"]) == ("assigned", {"v": 2})


def test_a_stopping_deliverer_leaves_the_group_unless_it_holds_entries(app, api):
    queue = app.extensions["orchestrator.services"].deliveries
    subscribe(api, events=["task.created"])
    api.create()
    assert queue.read_new("holder", 100, 0)
    queue.ensure_group()
    queue.read_new("idle", 100, 0)
    queue.leave("idle")
    queue.leave("holder")  # still holds an entry: stays, so it can be reclaimed
    names = {c["name"] for c in queue.client.xinfo_consumers(queue.stream, "deliverers")}
    assert names == {"holder"}


def test_a_subscription_owed_more_than_the_log_keeps_loses_no_delivery(app, api):
    """The log keeps the newest deliveries, but one still pending is owed: never dropped."""
    queue = app.extensions["orchestrator.services"].deliveries
    hook = subscribe(api, events=["task.*"])
    owed = 1010  # more than the log keeps (1,000), e.g. while the receiver is down
    entries = [
        {"entry_id": f"{i}-0", "event_id": f"{i}-0", "event_type": "task.created", "data": "{}"}
        for i in range(1, owed + 1)
    ]
    assert queue.fan_out(entries[:600]) + queue.fan_out(entries[600:]) == owed
    attempts, _ = queue.claim(2 * owed)
    assert sorted(int(a.delivery["event_id"].split("-")[0]) for a in attempts) == list(
        range(1, owed + 1)
    )
    for item in attempts:
        queue.record(item, delivered=True, status_code=200, error=None, delay_ms=0)
    stats = app.extensions["orchestrator.services"].stats.read()["webhooks"]
    assert stats["delivered"] == owed and stats["pending_deliveries"] == 0
    listed = queue.keys.name("deliveries", hook["webhook_id"])
    assert queue.client.zcard(listed) == 1000  # delivered, the oldest leave the log


def test_a_retry_by_hand_starts_the_delivery_over(app, api):
    """The backoff restarts (the first failure after a retry waits the schedule's first
    step, not its last), and an attempt under way when it was retried cannot push the
    retry's 'due now' back."""
    queue = app.extensions["orchestrator.services"].deliveries
    hook = subscribe(api, events=["task.*"])
    entry = {"entry_id": "1-0", "event_id": "1-0", "event_type": "task.created", "data": "{}"}
    assert queue.fan_out([entry]) == 1
    for _ in range(3):  # three failed attempts: the next wait would be the schedule's third
        (item,), _ = queue.claim(10)
        queue.record(item, delivered=False, status_code=500, error="HTTP 500", delay_ms=0)
    (in_flight,), _ = queue.claim(10)
    assert (in_flight.number, in_flight.in_series) == (4, 4)
    path = f"/webhooks/{hook['webhook_id']}/deliveries/{in_flight.delivery['delivery_id']}/retry"
    api.call("POST", path, as_="admin", expect=202)
    # The attempt under way fails late: noted, but the retry stays due now.
    late = queue.record(in_flight, delivered=False, status_code=500, error="late", delay_ms=60_000)
    assert late["delivery"]["last_error"] == "late" and late["delivery"]["status"] == "pending"
    (again,), _ = queue.claim(10)
    assert (again.number, again.in_series) == (5, 1)  # the count goes on; the series restarts
