"""/ui without a browser: sign-in, the cookie, CSRF, roles, headers, and the API left as it was."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jwt as pyjwt
import pytest

from app.observability import scrub_event
from app.ui import bp
from app.ui.session import COOKIE
from tests.conftest import API_KEYS, HEADERS, PRINCIPALS
from tests.helpers import metric_sample

GATED = {"type": "deploy", "priority": "P1", "payload": {"environment": "production", "v": 1}}
PAGES = ["/ui/", "/ui/approvals/history", "/ui/tasks", "/ui/queues"]


def field(html: str, name: str) -> str:
    """The value of the first hidden input called `name`."""
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field"
    return found.group(1)


def sign_in(client, role: str, next_path: str = "/ui/"):
    """Sign a test client in with the API key of `role`; the redirect response."""
    nonce = field(client.get("/ui/login").get_data(as_text=True), "nonce")
    data = {"nonce": nonce, "api_key": API_KEYS[role], "next": next_path}
    return client.post("/ui/login", data=data)


@pytest.fixture
def browser(app):
    """A fresh test client per principal: browser("ops") is signed in as ops."""

    def open_as(role: str | None):
        client = app.test_client()
        if role:
            assert sign_in(client, role).status_code == 303
        return client

    return open_as


@pytest.fixture
def gated(api):
    """A production deploy created by the agent principal, waiting for approval."""
    return api.create(**GATED)["task"]


def test_pages_send_anonymous_visitors_to_sign_in(client):
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/ui/login?next=")


def test_sign_in_sets_an_httponly_lax_cookie_scoped_to_ui(client):
    response = sign_in(client, "user")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(COOKIE))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui" in cookie
    assert "Secure" in cookie  # everywhere but ENVIRONMENT=development
    set_cookies = response.headers.getlist("Set-Cookie")
    assert not any(c.startswith("csrf_access_token") for c in set_cookies)  # no JS-readable copy


def test_cookie_is_not_secure_in_development(make_app):
    client = make_app(ENVIRONMENT="development").test_client()
    cookie = sign_in(client, "user").headers.getlist("Set-Cookie")[0]
    assert "Secure" not in cookie and "HttpOnly" in cookie


def test_a_wrong_key_is_refused_and_never_echoed(client):
    nonce = field(client.get("/ui/login").get_data(as_text=True), "nonce")
    secret = "not-a-key-but-a-secret-0123456789"
    response = client.post("/ui/login", data={"nonce": nonce, "api_key": secret})
    assert response.status_code == 401
    assert secret not in response.get_data(as_text=True)
    assert not any(c.startswith(f"{COOKIE}=") for c in response.headers.getlist("Set-Cookie"))


def test_wrong_keys_at_sign_in_count_as_failed_authentications(make_app):
    """The sign-in form is no way around the per-address limit on failed authentications
    (its wrong keys were once not counted: a free key oracle next to the API's)."""
    client = make_app(ORCHESTRATOR_RATE_LIMIT_AUTH_FAILURES="2").test_client()
    page, statuses = client.get("/ui/login"), []
    for n in range(3):
        nonce = field(page.get_data(as_text=True), "nonce")  # each form has a fresh one
        page = client.post("/ui/login", data={"nonce": nonce, "api_key": f"guess-{n:020d}"})
        statuses.append(page.status_code)
    assert statuses == [401, 401, 429]
    # The address is blocked for the API and the form alike, a valid key included.
    assert client.get("/tasks", headers=HEADERS["user"]).status_code == 429
    valid = client.post("/ui/login", data={"nonce": nonce, "api_key": API_KEYS["user"]})
    assert valid.status_code == 429 and COOKIE not in valid.headers.get("Set-Cookie", "")


def test_sign_in_without_the_form_nonce_is_refused(client):
    response = client.post("/ui/login", data={"api_key": API_KEYS["admin"]})
    assert response.status_code == 403
    assert not any(c.startswith(f"{COOKIE}=") for c in response.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize(
    "target", ["https://evil.example/ui/", "//evil.example/ui/", "/tasks", "/ui/logout", "/\\x"]
)
def test_sign_in_never_redirects_outside_ui(client, target):
    assert sign_in(client, "user", target).headers["Location"] == "/ui/"


def test_sign_in_returns_to_the_page_asked_for(client):
    assert sign_in(client, "user", "/ui/tasks?status=failed").headers["Location"] == (
        "/ui/tasks?status=failed"
    )


def test_sign_out_clears_the_cookie(browser):
    client = browser("user")
    response = client.get("/ui/logout")
    assert response.status_code == 303
    assert client.get("/ui/").status_code == 302


def test_the_api_never_accepts_the_ui_cookie(browser):
    client = browser("admin")
    assert client.get("/ui/tasks").status_code == 200
    assert client.get("/tasks").status_code == 401
    assert client.post("/tasks", json=GATED).status_code == 401


def test_api_keys_and_bearer_tokens_work_as_before(client, tokens):
    assert client.get("/tasks", headers=HEADERS["user"]).status_code == 200
    assert client.get("/tasks", headers=tokens["user"]).status_code == 200


@pytest.mark.parametrize("path", [*PAGES, "/ui/login", "/ui/static/ui.css"])
def test_every_ui_response_has_strict_security_headers(browser, path):
    response = browser("user").get(path)
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    for directive in ("script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_pages_have_no_inline_script(browser, gated):
    client = browser("ops")
    for path in [*PAGES, f"/ui/tasks/{gated['task_id']}"]:
        html = client.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html), path
        assert not re.search(r"\son[a-z]+=", html), path


def test_the_creator_is_told_and_gets_no_approve_button(browser, gated):
    html = browser("agent").get("/ui/").get_data(as_text=True)
    assert "you requested this" in html.lower()
    assert f"/ui/approvals/{gated['approval_id']}/approve" not in html
    assert f"/ui/approvals/{gated['approval_id']}/reject" in html  # withdrawing is allowed


def test_a_viewer_sees_no_buttons_and_its_posts_are_refused(browser, api, gated):
    client = browser("user")
    html = client.get("/ui/").get_data(as_text=True)
    assert gated["task_id"] in html
    assert "<button" not in html
    assert "<form" not in html
    assert "<form" not in client.get(f"/ui/tasks/{gated['task_id']}").get_data(as_text=True)
    # A forged form: even with a valid CSRF token, the role is too weak.
    csrf = field(browser("ops").get("/ui/").get_data(as_text=True), "csrf_token")
    approve = f"/ui/approvals/{gated['approval_id']}/approve"
    assert client.post(approve, data={"csrf_token": csrf}).status_code == 403
    viewer_csrf = _viewer_csrf(client)
    assert client.post(approve, data={"csrf_token": viewer_csrf}).status_code == 403
    cancel = f"/ui/tasks/{gated['task_id']}/cancel"
    assert client.post(cancel, data={"csrf_token": viewer_csrf}).status_code == 403
    assert api.task(gated["task_id"])["status"] == "awaiting_approval"


def _viewer_csrf(client) -> str:
    """A viewer's own CSRF value: the csrf claim of its cookie (its pages have no forms)."""
    token = client.get_cookie(COOKIE, path="/ui").value
    return pyjwt.decode(token, options={"verify_signature": False})["csrf"]


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(browser, api, gated):
    client = browser("ops")
    approve = f"/ui/approvals/{gated['approval_id']}/approve"
    assert client.post(approve, data={"comment": "forged"}).status_code == 403
    assert client.post(approve, data={"csrf_token": "nope"}).status_code == 403
    assert api.task(gated["task_id"])["status"] == "awaiting_approval"


def test_approve_reject_and_cancel_through_forms(browser, api, gated):
    client = browser("ops")
    csrf = field(client.get("/ui/").get_data(as_text=True), "csrf_token")
    approve = f"/ui/approvals/{gated['approval_id']}/approve"
    response = client.post(approve, data={"csrf_token": csrf, "comment": "ship it"})
    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"/ui/tasks/{gated['task_id']}")
    assert api.task(gated["task_id"])["status"] == "assigned"
    assert client.post(approve, data={"csrf_token": csrf}).status_code == 409  # decided
    other = api.create(**GATED)["task"]
    reject = f"/ui/approvals/{other['approval_id']}/reject"
    assert client.post(reject, data={"csrf_token": csrf, "reason": "not now"}).status_code == 303
    assert api.task(other["task_id"])["error"]
    plain = api.create()["task"]
    cancel = f"/ui/tasks/{plain['task_id']}/cancel"
    assert client.post(cancel, data={"csrf_token": csrf, "reason": "dup"}).status_code == 303
    assert api.task(plain["task_id"])["status"] == "cancelled"


def test_the_creator_cannot_approve_by_forging_the_form(browser, api, gated):
    client = browser("agent")
    csrf = field(client.get("/ui/").get_data(as_text=True), "csrf_token")
    approve = f"/ui/approvals/{gated['approval_id']}/approve"
    assert client.post(approve, data={"csrf_token": csrf}).status_code == 403
    assert api.task(gated["task_id"])["status"] == "awaiting_approval"


def test_an_api_token_is_no_session_cookie(app, api):
    """Only sign-in makes a session (at most an hour): a token from /auth/token set as the
    cookie is refused, so it can neither outlive the session cap nor carry a delegated
    subject past four eyes (an admin's token for 'stranger' once approved its own task)."""
    created = api.create(as_="admin", **GATED)
    minted = api.call("POST", "/auth/token", as_="admin", json={"sub": "stranger"})
    token = minted["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    api.call("POST", f"/approvals/{created['approval_id']}/approve", as_=bearer, expect=403)
    client = app.test_client()
    client.set_cookie(COOKIE, token, path="/ui")
    csrf = pyjwt.decode(token, options={"verify_signature": False})["csrf"]
    approve = f"/ui/approvals/{created['approval_id']}/approve"
    assert client.post(approve, data={"csrf_token": csrf}).status_code == 401
    assert client.get("/ui/").status_code == 302  # to the sign-in page
    assert api.task(created["task_id"])["status"] == "awaiting_approval"


@pytest.mark.parametrize(
    ("payload", "detail"), [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")]
)
def test_edited_payload_is_validated_on_the_server(browser, api, gated, payload, detail):
    client = browser("ops")
    csrf = field(client.get("/ui/").get_data(as_text=True), "csrf_token")
    approve = f"/ui/approvals/{gated['approval_id']}/approve"
    response = client.post(approve, data={"csrf_token": csrf, "payload": payload})
    assert response.status_code == 422 and detail in response.get_data(as_text=True)
    assert api.task(gated["task_id"])["status"] == "awaiting_approval"


def test_an_unchanged_payload_approves_as_requested(browser, api, gated):
    client = browser("ops")
    html = client.get("/ui/").get_data(as_text=True)
    approve = f"/ui/approvals/{gated['approval_id']}/approve"
    payload = '{\n  "environment": "production",\n  "v": 1\n}'
    data = {"csrf_token": field(html, "csrf_token"), "payload": payload}
    assert client.post(approve, data=data).status_code == 303
    assert api.task(gated["task_id"])["status"] == "assigned"


def test_approving_pins_the_payload_shown_so_a_later_edit_is_never_undone(make_app, api):
    # Two approvals needed: admin's edit through the API counts as the first of the new
    # version, and ops' form, loaded before it, still holds the old payload.
    rule = {"name": "two", "match": {"types": ["deploy"]}, "required": 2,
            "approvers": ["apikey:ops", "apikey:admin"]}  # fmt: skip
    app = make_app(ORCHESTRATOR_APPROVAL_POLICY=json.dumps([rule]))
    api = api.using(app.test_client())
    created = api.create(**GATED)
    client = app.test_client()
    assert sign_in(client, "ops").status_code == 303
    html = client.get("/ui/").get_data(as_text=True)
    edited = {"environment": "production", "v": 2}
    api.approve(created["approval_id"], as_="admin", payload=edited)
    approve = f"/ui/approvals/{created['approval_id']}/approve"
    old_form = {
        "csrf_token": field(html, "csrf_token"),
        "payload_sha256": field(html, "payload_sha256"),
        "payload": json.dumps(GATED["payload"], indent=2),
    }
    refused = client.post(approve, data=old_form)
    assert refused.status_code == 409
    task = api.task(created["task_id"])
    assert (task["status"], task["payload"]) == ("awaiting_approval", edited)
    assert len(api.approval(created["approval_id"])["approvals"]) == 1  # admin's alone
    fresh = client.get("/ui/").get_data(as_text=True)
    current = {
        "csrf_token": field(fresh, "csrf_token"),
        "payload_sha256": field(fresh, "payload_sha256"),
    }
    assert client.post(approve, data=current).status_code == 303
    task = api.task(created["task_id"])
    assert (task["status"], task["payload"]) == ("assigned", edited)


def test_task_page_shows_fields_and_timeline(browser, gated):
    html = browser("user").get(f"/ui/tasks/{gated['task_id']}").get_data(as_text=True)
    assert "task.created" in html and "awaiting_approval" in html and PRINCIPALS["agent"] in html


def test_unknown_task_and_bad_filters_are_pages_not_json(browser):
    client = browser("user")
    response = client.get("/ui/tasks/not-a-task-id")
    assert response.status_code in (404, 422) and response.mimetype == "text/html"
    response = client.get("/ui/tasks?status=bogus")
    assert response.status_code == 422 and response.mimetype == "text/html"


def test_task_list_filters_and_pages(browser, api):
    for _ in range(27):
        api.create()
    client = browser("user")
    first = client.get("/ui/tasks?type=bugfix").get_data(as_text=True)
    assert first.count("/ui/tasks/") >= 25
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    assert "type=bugfix" in next_url
    second = client.get(next_url).get_data(as_text=True)
    assert "First page" in second


def test_ui_requests_count_per_signed_in_principal(make_app):
    app = make_app(ORCHESTRATOR_RATE_LIMIT_DEFAULT="6")
    viewer, approver = app.test_client(), app.test_client()
    sign_in(viewer, "user")  # two anonymous requests from 127.0.0.1 each
    sign_in(approver, "ops")
    statuses = [viewer.get("/ui/tasks").status_code for _ in range(7)]
    assert statuses == [200] * 6 + [429]
    assert approver.get("/ui/tasks").status_code == 200  # same address, its own budget


def test_sentry_never_gets_the_sign_in_key_or_form_tokens():
    event = {"request": {"data": {"api_key": "k", "csrf_token": "c", "nonce": "n", "reason": "r"}}}
    assert scrub_event(event)["request"]["data"] == {"reason": "r"}


def test_redis_down_is_a_page(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/ui/login")  # the limiter already needs Redis
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert "Redis unavailable" in response.get_data(as_text=True)


def test_assets_are_vendored_and_served_from_the_app(browser):
    client = browser("user")
    html = client.get("/ui/").get_data(as_text=True)
    assets = re.findall(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="([^"]+)"', html)
    assert sorted(assets) == [
        "/ui/static/htmx.min.js",
        "/ui/static/ui.css",
        "/ui/static/ui.js",
    ]
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    static = Path(bp.static_folder)
    assert "htmx" in (static / "htmx.min.js").read_text()[:2000]
    assert "Zero-Clause BSD" in (static / "htmx.LICENSE").read_text()


# --- retry on the task page ----------------------------------------------------------------


@pytest.fixture
def failed(api):
    """A plain task its agent claimed and reported failed."""
    task_id = api.create()["task_id"]
    api.claim()
    return api.status(task_id, "failed", error="boom")["task"]


def transitions_to(client, status: str) -> float:
    """orchestrator_task_transitions_total{status=...} as /metrics shows it now."""
    text = client.get("/metrics").get_data(as_text=True)
    return metric_sample(text, "orchestrator_task_transitions_total", status=status)


def test_an_admin_retries_a_failed_task_from_its_page(browser, api, failed):
    client = browser("admin")
    page = f"/ui/tasks/{failed['task_id']}"
    html = client.get(page).get_data(as_text=True)
    assert f'action="{page}/retry"' in html and "Retry task" in html
    before = transitions_to(client, "assigned")
    response = client.post(f"{page}/retry", data={"csrf_token": field(html, "csrf_token")})
    assert response.status_code == 303
    assert response.headers["Location"] == f"{page}?notice=retried"
    task = api.task(failed["task_id"])
    assert (task["status"], task["retry_count"], task["error"]) == ("assigned", 0, None)
    assert transitions_to(client, "assigned") == before + 1
    after = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Task retried: it is back in its agent" in after
    assert "task.retried" in after and f'action="{page}/retry"' not in after  # assigned now


@pytest.mark.parametrize("role", ["agent", "user"])
def test_below_admin_there_is_no_retry_button_and_a_forged_one_is_refused(
    browser, api, failed, role
):
    client = browser(role)
    page = f"/ui/tasks/{failed['task_id']}"
    html = client.get(page).get_data(as_text=True)
    assert "failed" in html and "/retry" not in html and "Retry task" not in html
    # The principal's own valid CSRF value: only the role can refuse it.
    response = client.post(f"{page}/retry", data={"csrf_token": _viewer_csrf(client)})
    assert response.status_code == 403
    assert "Requires role admin" in response.get_data(as_text=True)
    assert api.task(failed["task_id"])["status"] == "failed"


def test_a_retry_without_or_with_a_wrong_csrf_token_is_refused(browser, api, failed):
    client = browser("admin")
    retry = f"/ui/tasks/{failed['task_id']}/retry"
    for data in ({}, {"csrf_token": "nope"}):
        response = client.post(retry, data=data)
        assert response.status_code == 403
        assert "not sent by this page" in response.get_data(as_text=True)
    assert api.task(failed["task_id"])["status"] == "failed"


def test_a_retry_the_domain_refuses_is_a_409_page_that_says_why(browser, api, gated):
    api.reject(gated["approval_id"], reason="not today")
    client = browser("admin")
    page = f"/ui/tasks/{gated['task_id']}"
    html = client.get(page).get_data(as_text=True)
    assert "cancelled" in html and "Retry task" in html  # the gate's rule is the domain's
    response = client.post(f"{page}/retry", data={"csrf_token": field(html, "csrf_token")})
    assert response.status_code == 409 and response.mimetype == "text/html"
    assert "never passed its approval gate" in response.get_data(as_text=True)
    assert api.task(gated["task_id"])["status"] == "cancelled"
    plain = api.create()["task"]  # assigned: no button, and a forged retry is a conflict
    response = client.post(
        f"/ui/tasks/{plain['task_id']}/retry", data={"csrf_token": field(html, "csrf_token")}
    )
    assert response.status_code == 409
    assert "Task is assigned; cannot retry it" in response.get_data(as_text=True)
