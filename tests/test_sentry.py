"""Sentry: on only with SENTRY_DSN, and never sent a credential."""

from __future__ import annotations

import dataclasses

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport

from app.decision_links import DecisionLinks
from app.observability import init_sentry, scrub_event
from tests.conftest import API_KEYS, mint_token

FAKE_DSN = "https://public@127.0.0.1:9/1"  # never contacted: the transport below captures


class CapturingTransport(Transport):
    """Keeps every envelope Sentry would have sent, serialized as it would go on the wire."""

    def __init__(self, options=None):
        super().__init__(options)
        self.sent: list[str] = []

    def capture_envelope(self, envelope) -> None:
        self.sent.append(envelope.serialize().decode("utf-8", errors="replace"))


@pytest.fixture(autouse=True)
def sentry_off_afterwards():
    yield
    sentry_sdk.init()  # no DSN: Sentry off again for every other test


@pytest.fixture
def sentry():
    """init(app, **settings): turn Sentry on for `app`'s settings with a capturing transport."""
    transport = CapturingTransport()

    def init(app, **settings):
        config = dataclasses.replace(
            app.extensions["orchestrator.settings"], sentry_dsn=FAKE_DSN, **settings
        )
        assert init_sentry(config, transport=transport)
        return transport

    return init


def add_failing_view(app):
    def boom():
        raise RuntimeError("boom from a view")

    app.add_url_rule("/boom", "boom", boom, methods=["GET", "POST"])


def test_sentry_is_off_without_a_dsn(app):
    assert app.extensions["orchestrator.settings"].sentry_dsn == ""
    assert init_sentry(app.extensions["orchestrator.settings"]) is False
    assert not sentry_sdk.get_client().is_active()


def test_sentry_is_on_with_a_dsn_and_without_pii(make_app):
    make_app(SENTRY_DSN=FAKE_DSN)
    client = sentry_sdk.get_client()
    assert client.is_active()
    assert not client.options["send_default_pii"]
    assert not sentry_sdk.scope.should_send_default_pii()
    assert client.options["before_send"] is scrub_event
    assert client.options["before_send_transaction"] is scrub_event


def test_errors_reach_sentry_without_credentials(app, sentry):
    add_failing_view(app)
    transport = sentry(app, sentry_traces_sample_rate=1.0)
    token = mint_token("jwt-agent", "agent")
    cookie = "session=cookie-secret-0123456789"
    client = app.test_client()
    for headers in (
        {"X-API-Key": API_KEYS["admin"], "Cookie": cookie},
        {"Authorization": f"Bearer {token}", "X-Request-ID": "req-sentry-1"},
    ):
        response = client.post("/boom", json={"n": 1}, headers=headers)
        assert response.status_code == 500
        assert response.json == {"detail": "Internal server error"}
    sentry_sdk.flush()
    wire = "\n".join(transport.sent)
    assert wire.count("boom from a view") >= 2  # both errors were reported...
    assert "req-sentry-1" in wire and "/boom" in wire  # ...with their request
    for secret in (API_KEYS["admin"], token, "cookie-secret"):  # ...but no credential
        assert secret not in wire


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer t0ken", "X-API-Key": "k3y", "Cookie": "c00kie", "Accept": "*/*"},
        [
            ["authorization", "Bearer t0ken"],
            ["X-Api-Key", "k3y"],
            ["cookie", "c00kie"],
            ["Accept", "*/*"],
        ],
    ],
)
def test_scrub_event_drops_credential_headers_and_cookies(headers):
    event = {"request": {"url": "http://x/tasks", "headers": headers, "cookies": "c00kie"}}
    scrubbed = scrub_event(event, {})
    text = repr(scrubbed)
    assert "t0ken" not in text and "k3y" not in text and "c00kie" not in text
    kept = scrubbed["request"]["headers"]
    assert (kept == {"Accept": "*/*"}) if isinstance(kept, dict) else (kept == [["Accept", "*/*"]])
    assert scrubbed["request"]["url"] == "http://x/tasks"


def test_stack_frame_locals_never_reach_sentry(app, sentry):
    def leaky():
        # Built at run time: the source line itself is sent as context, the value must not be.
        payload_value = "-".join(("payload", "secret", "0123456789"))  # noqa: F841
        raise RuntimeError("boom with locals")

    app.add_url_rule("/leaky", "leaky", leaky)
    transport = sentry(app)
    assert app.test_client().get("/leaky").status_code == 500
    sentry_sdk.flush()
    wire = "\n".join(transport.sent)
    assert "boom with locals" in wire and "payload-secret" not in wire


def test_a_decision_link_token_never_reaches_sentry(app, sentry, monkeypatch):
    """The token in /decisions/<token> is the link's credential: an error on its page
    reports the route, never the token (the request URL once carried it whole)."""
    token = (
        DecisionLinks(app.extensions["orchestrator.settings"])
        .url("apr-00000000-0000-4000-8000-000000000000", "apikey:ops", "approve")
        .rsplit("/", 1)[1]
    )

    def boom(_approval_id):
        raise RuntimeError("boom on a decision page")

    monkeypatch.setattr(app.extensions["orchestrator.services"].approvals, "get", boom)
    transport = sentry(app, sentry_traces_sample_rate=1.0)
    assert app.test_client().get(f"/decisions/{token}?x=1").status_code == 500
    sentry_sdk.flush()
    wire = "\n".join(transport.sent)
    assert "boom on a decision page" in wire and "/decisions/" in wire
    assert token not in wire and token[:20] not in wire
