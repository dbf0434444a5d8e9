"""/ui/webhooks without a browser: subscriptions, their deliveries, retry, and who may see it."""

from __future__ import annotations

import re

import pytest

from app.delivery.worker import Deliverer
from tests.test_ui import _viewer_csrf, field, sign_in

# Nothing listens on port 9 of this machine: every attempt is refused at once.
UNROUTABLE = "http://127.0.0.1:9/hook"
PAGE = "/ui/webhooks"


@pytest.fixture
def hooks_app(make_app):
    """Private targets allowed (the unroutable one), and a failure dies at its first attempt."""
    return make_app(ORCHESTRATOR_WEBHOOK_ALLOW_PRIVATE="true", ORCHESTRATOR_WEBHOOK_MAX_AGE="1")


@pytest.fixture
def hooks_api(api, hooks_app):
    return api.using(hooks_app.test_client())


@pytest.fixture
def signed_in(hooks_app):
    """signed_in("admin"): a fresh test client of hooks_app, signed in as that role."""

    def open_as(role: str):
        client = hooks_app.test_client()
        assert sign_in(client, role).status_code == 303
        return client

    return open_as


@pytest.fixture
def hook(hooks_app, hooks_api):
    """A subscription to task.created with one dead delivery (refused, past its max age)
    and one pending test delivery; its secret, shown once, is in the answer."""
    created = hooks_api.call(
        "POST",
        "/webhooks",
        as_="admin",
        expect=201,
        json={"url": UNROUTABLE, "events": ["task.created"], "description": "ops pager"},
    )
    hooks_api.create()
    services = hooks_app.extensions["orchestrator.services"]
    queue, settings = services.deliveries, hooks_app.extensions["orchestrator.settings"]
    assert queue.fan_out(queue.read_new("ui-test", 100, 0)) == 1
    attempts, now = queue.claim(10)
    assert len(attempts) == 1
    Deliverer(queue, settings).attempt(attempts[0], now)  # the deliverer's own attempt
    path = f"/webhooks/{created['webhook_id']}"
    hooks_api.call("POST", f"{path}/test", as_="admin", expect=202)
    return created


def deliveries(hooks_api, hook: dict) -> dict[str, dict]:
    """The subscription's deliveries as the API lists them, by event type."""
    path = f"/webhooks/{hook['webhook_id']}/deliveries"
    listed = hooks_api.call("GET", path, as_="admin")["deliveries"]
    return {d["event_type"]: d for d in listed}


def retry_path(hook: dict, delivery: dict) -> str:
    return f"/ui/webhooks/{hook['webhook_id']}/deliveries/{delivery['delivery_id']}/retry"


def test_an_admin_sees_each_subscription_and_its_deliveries_never_its_secret(
    signed_in, hooks_api, hook
):
    found = deliveries(hooks_api, hook)
    dead, pending = found["task.created"], found["webhook.test"]
    assert (dead["status"], pending["status"]) == ("dead", "pending")
    html = signed_in("admin").get(PAGE).get_data(as_text=True)
    assert "ops pager" in html and UNROUTABLE in html and hook["webhook_id"] in html
    assert re.search(rf'id="delivery-{dead["delivery_id"]}".*?status-dead', html, re.S)
    assert re.search(rf'id="delivery-{pending["delivery_id"]}".*?status-pending', html, re.S)
    assert dead["last_error"] and dead["last_error"] in html
    # Only the dead one offers a retry; the pending one is not due yet.
    assert re.findall(r'action="([^"]+/retry)"', html) == [retry_path(hook, dead)]
    assert hook["secret"] not in html and hook["secret"].removeprefix("whsec_") not in html
    assert 'href="/ui/webhooks" aria-current="page">Webhooks</a>' in html


def test_retrying_a_dead_delivery_makes_it_pending_and_returns_to_the_page(
    signed_in, hooks_api, hook
):
    dead = deliveries(hooks_api, hook)["task.created"]
    client = signed_in("admin")
    csrf = field(client.get(PAGE).get_data(as_text=True), "csrf_token")
    response = client.post(retry_path(hook, dead), data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["Location"] == (
        f"{PAGE}?notice=delivery_retried#webhook-{hook['webhook_id']}"
    )
    again = deliveries(hooks_api, hook)["task.created"]
    assert (again["delivery_id"], again["status"]) == (dead["delivery_id"], "pending")
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Delivery queued again" in html


def test_a_delivery_retry_without_the_csrf_token_is_refused(signed_in, hooks_api, hook):
    dead = deliveries(hooks_api, hook)["task.created"]
    response = signed_in("admin").post(retry_path(hook, dead), data={})
    assert response.status_code == 403
    assert deliveries(hooks_api, hook)["task.created"]["status"] == "dead"


def test_an_unknown_delivery_is_a_404_page(signed_in, hook):
    client = signed_in("admin")
    csrf = field(client.get(PAGE).get_data(as_text=True), "csrf_token")
    unknown = {"delivery_id": "dlv_" + "0" * 24}
    response = client.post(retry_path(hook, unknown), data={"csrf_token": csrf})
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Delivery not found" in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ["agent", "user"])
def test_below_admin_the_page_and_its_retry_are_refused(signed_in, hooks_api, hook, role):
    client = signed_in(role)
    refused = client.get(PAGE)
    assert refused.status_code == 403
    body = refused.get_data(as_text=True)
    assert "Requires role admin" in body and "ops pager" not in body
    assert "/ui/webhooks" not in client.get("/ui/tasks").get_data(as_text=True)  # no nav link
    dead = deliveries(hooks_api, hook)["task.created"]
    response = client.post(retry_path(hook, dead), data={"csrf_token": _viewer_csrf(client)})
    assert response.status_code == 403
    assert deliveries(hooks_api, hook)["task.created"]["status"] == "dead"


def test_no_subscriptions_is_said(signed_in):
    html = signed_in("admin").get(PAGE).get_data(as_text=True)
    assert "No subscriptions yet" in html
