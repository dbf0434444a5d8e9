"""Webhooks end to end with real processes: gunicorn, deliverers and a local receiver."""

from __future__ import annotations

import pytest
import requests

from harness import Deliverer, LiveServer, wait_until
from tests.conftest import HEADERS, base_env
from tests.receiver import Receiver, signature_valid

pytestmark = pytest.mark.slow

FAST = {
    "ORCHESTRATOR_WEBHOOK_ALLOW_PRIVATE": "true",
    "ORCHESTRATOR_WEBHOOK_BACKOFF": "0.2",
    "ORCHESTRATOR_WEBHOOK_RECLAIM_SECONDS": "2",
    "ORCHESTRATOR_WEBHOOK_MAX_AGE": "60",
}


class Stack:
    """One deployment: a gunicorn server, its deliverers and a receiver, sharing a prefix."""

    def __init__(self, redis_url: str, directory, **overrides: str):
        self.directory = directory
        self.server = LiveServer(
            base_env(redis_url, **{**FAST, **overrides}), 1, directory / "g.log"
        )
        self.server.env["ORCHESTRATOR_PUBLIC_URL"] = self.server.url
        self.receiver = Receiver().start()
        self.deliverers: list[Deliverer] = []

    def deliverer(self) -> Deliverer:
        log = self.directory / f"deliverer-{len(self.deliverers)}.log"
        started = Deliverer(self.server.env, log).start()
        self.deliverers.append(started)
        return started

    def call(self, method: str, path: str, as_: str = "admin", expect: int = 200, **kwargs):
        response = requests.request(
            method, self.server.url + path, headers=HEADERS[as_], timeout=10, **kwargs
        )
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    def subscribe(self, path: str, events: list[str], **body) -> dict:
        url = self.receiver.url(path)
        return self.call(
            "POST", "/webhooks", expect=201, json={"url": url, "events": events, **body}
        )

    def deliveries(self, hook: dict) -> list[dict]:
        return self.call("GET", f"/webhooks/{hook['webhook_id']}/deliveries")["deliveries"]

    def stop(self) -> None:
        for deliverer in self.deliverers:
            deliverer.stop()
        self.receiver.stop()
        self.server.stop()


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    built = Stack(redis_server.url, tmp_path_factory.mktemp("webhooks"))
    built.server.start()
    yield built
    built.stop()


def settled(stack: Stack, hook: dict, timeout: float = 30) -> list[dict]:
    """The deliveries once none is pending (or TimeoutError)."""

    def done():
        found = stack.deliveries(hook)
        return found if found and all(d["status"] != "pending" for d in found) else None

    return wait_until(done, timeout=timeout, interval=0.2)


def test_kill_a_deliverer_mid_delivery_and_the_event_still_arrives(stack):
    stack.receiver.behaviour["/slow"] = ("sleep", 4)
    hook = stack.subscribe("/slow", ["task.created"])
    first = stack.deliverer()
    task = stack.call("POST", "/tasks", as_="agent", expect=201, json={"type": "bugfix"})
    wait_until(lambda: stack.receiver.received("/slow"), timeout=20)
    first.kill()  # mid-delivery: the receiver is still holding the request
    stack.deliverer()
    (delivery,) = settled(stack, hook)
    assert delivery["status"] == "delivered" and delivery["attempts"] >= 2
    seen = stack.receiver.received("/slow")
    assert {r["headers"]["webhook-id"] for r in seen} == {delivery["delivery_id"]}
    for request in seen:
        assert signature_valid(hook["secret"], request["headers"], request["body"])
    body = stack.receiver.events("/slow")[-1]
    assert body["type"] == "task.created" and body["data"]["task_id"] == task["task_id"]
    logs = stack.server.logs() + "".join(d.logs() for d in stack.deliverers)
    assert hook["secret"] not in logs and hook["secret"].removeprefix("whsec_") not in logs


def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(stack):
    stack.receiver.behaviour["/flaky"] = [500, 500, 500, 200]
    hook = stack.subscribe("/flaky", ["task.assigned"])
    stack.call("POST", "/tasks", as_="agent", expect=201, json={"type": "bugfix"})
    (delivery,) = settled(stack, hook)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 4
    statuses = [r["status"] for r in stack.receiver.received("/flaky")]
    assert statuses == [500, 500, 500, 200]
    assert len({r["headers"]["webhook-id"] for r in stack.receiver.received("/flaky")}) == 1
    path = f"/webhooks/{hook['webhook_id']}/deliveries/{delivery['delivery_id']}/retry"
    refused = stack.call("POST", path, expect=409)
    assert refused["current_status"] == "delivered"  # sent once; the counters stay true


def test_a_redirect_is_not_followed(stack):
    stack.receiver.behaviour["/moved"] = ("redirect", "/elsewhere")
    hook = stack.subscribe("/moved", ["webhook.test"])
    stack.call("POST", f"/webhooks/{hook['webhook_id']}/test", expect=202)

    def refused():
        found = stack.deliveries(hook)
        return found if found and found[0]["last_status_code"] == 302 else None

    (delivery,) = wait_until(refused, timeout=20, interval=0.2)
    assert "redirect" in delivery["last_error"]
    assert stack.receiver.received("/elsewhere") == []
    stack.call("DELETE", f"/webhooks/{hook['webhook_id']}", expect=204)


def test_a_decision_link_approves_once_as_its_principal(stack):
    stack.subscribe("/decide", ["approval.requested"], approvers=["apikey:agent", "apikey:ops"])
    created = stack.call(
        "POST", "/tasks", as_="agent", expect=201, json={"type": "bugfix", "priority": "P0"}
    )
    approval_id = created["approval_id"]
    (event,) = wait_until(lambda: stack.receiver.events("/decide"), timeout=20)
    links = {entry["principal"]: entry for entry in event["data"]["links"]}
    assert set(links) == {"apikey:agent", "apikey:ops"}
    assert all(
        links["apikey:ops"][verb].startswith(stack.server.url + "/decisions/")
        for verb in ("approve", "reject")
    )

    def approval():
        return stack.call("GET", f"/approvals/{approval_id}", as_="user")

    page = requests.get(links["apikey:ops"]["approve"], timeout=10)
    assert page.status_code == 200 and "Approve as apikey:ops" in page.text
    assert (
        "<script" not in page.text and "script-src" not in page.headers["Content-Security-Policy"]
    )
    assert approval()["status"] == "pending"  # opening the link decided nothing

    url = links["apikey:ops"]["approve"]
    tampered = url[:-3] + ("x" if url[-3] != "x" else "y") + url[-2:]
    assert requests.post(tampered, timeout=10).status_code == 400
    assert approval()["status"] == "pending"

    own = requests.post(links["apikey:agent"]["approve"], timeout=10)
    assert own.status_code == 403 and "four-eyes" in own.text
    assert approval()["status"] == "pending"

    done = requests.post(links["apikey:ops"]["approve"], data={"comment": "ok"}, timeout=10)
    assert done.status_code == 200, done.text
    decided = approval()
    assert decided["status"] == "approved" and decided["decided_by"] == "apikey:ops"
    again = requests.post(links["apikey:ops"]["approve"], timeout=10)
    assert again.status_code == 409 and "already used" in again.text
    assert requests.post(links["apikey:ops"]["reject"], timeout=10).status_code == 409
    assert approval()["status"] == "approved"


def test_two_deliverers_share_the_work_and_miss_nothing(stack):
    running = [d for d in stack.deliverers if d.process.poll() is None]
    while len(running) < 2:
        running.append(stack.deliverer())
    hook = stack.subscribe("/many", ["deploy.*"])
    published = {
        stack.call(
            "POST",
            "/events/publish",
            as_="agent",
            expect=201,
            json={"event_type": "deploy.done", "source_agent": "ops_agent", "payload": {"n": n}},
        )["event_id"]
        for n in range(20)
    }
    found = settled(stack, hook)
    assert len(found) == 20 and {d["status"] for d in found} == {"delivered"}
    assert {e["data"]["event_id"] for e in stack.receiver.events("/many")} == published


def test_health_and_metrics_show_the_deliverers(stack):
    health = requests.get(stack.server.url + "/health", timeout=10).json()["webhooks"]
    assert health["consumer_group"] == "ready" and health["delivered"] >= 3
    assert health["lag"] == 0
    text = requests.get(stack.server.url + "/metrics", timeout=10).text
    assert "orchestrator_webhook_delivered_total" in text
    assert "orchestrator_webhook_deliveries_pending" in text


def test_a_receiver_that_never_answers_ends_dead(redis_server, tmp_path):
    stack = Stack(redis_server.url, tmp_path, ORCHESTRATOR_WEBHOOK_MAX_AGE="3")
    try:
        stack.server.start()
        stack.receiver.behaviour["/silent"] = ("sleep", 30)
        hook = stack.subscribe("/silent", ["webhook.test"])
        stack.deliverer()
        stack.call("POST", f"/webhooks/{hook['webhook_id']}/test", expect=202)
        (delivery,) = settled(stack, hook, timeout=30)
        assert delivery["status"] == "dead" and delivery["attempts"] == 1
        assert "timed out" in delivery["last_error"]
        assert stack.call("GET", "/health")["webhooks"]["dead"] == 1
    finally:
        stack.stop()


def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery(redis_server, tmp_path):
    stack = Stack(
        redis_server.url,
        tmp_path,
        ORCHESTRATOR_WEBHOOK_ALLOW_PRIVATE="false",
        ORCHESTRATOR_WEBHOOK_MAX_AGE="2",
    )
    try:
        stack.server.start()
        literal = stack.receiver.url("/private")
        stack.call("POST", "/webhooks", expect=422, json={"url": literal, "events": ["*"]})
        # A name passes registration; its resolution (to 127.0.0.1) is checked on delivery.
        url = stack.receiver.url("/private", host="localhost")
        hook = stack.call("POST", "/webhooks", expect=201, json={"url": url, "events": ["*"]})
        stack.deliverer()
        stack.call("POST", f"/webhooks/{hook['webhook_id']}/test", expect=202)
        (delivery,) = settled(stack, hook, timeout=30)
        assert delivery["status"] == "dead" and "loopback" in delivery["last_error"]
        assert stack.receiver.requests == []
    finally:
        stack.stop()
