"""What an attacker can send a live gunicorn: malformed HTTP, made-up methods, a flood.

Raw sockets, because requests and the test client refuse to send what these send.
"""

from __future__ import annotations

import json
import socket

import pytest
import requests

from tests.conftest import HEADERS
from tests.helpers import metric_sample


def raw(server, request: bytes, timeout: float = 5) -> bytes:
    """Send bytes as they are and read until the server closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer (0 when there was none)."""
    line = answer.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


@pytest.fixture(scope="module")
def server(module_live_server):
    """One gunicorn with two workers for the module."""
    return module_live_server(workers=2)


MALFORMED = {
    "letters": b"Content-Length: abc\r\n",
    "negative": b"Content-Length: -1\r\n",
    "plus": b"Content-Length: +5\r\n",
    "two lengths": b"Content-Length: 1\r\nContent-Length: 2\r\n",
    "length and chunked": b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
    "chunked twice": b"Transfer-Encoding: chunked, chunked\r\n",
}


@pytest.mark.parametrize("headers", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_framing_gets_an_answer_and_the_worker_lives(server, headers):
    workers = sorted(server.worker_pids())
    answer = raw(server, b"POST / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\nabc")
    assert 400 <= status_of(answer) < 600, answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head
    assert "detail" in json.loads(body)
    assert sorted(server.worker_pids()) == workers
    assert "Traceback" not in server.logs()


def test_gunicorn_refusals_are_logged_as_json(server):
    answer = raw(server, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(answer) == 414
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    assert any(line.get("message") == "request" and line.get("status") == 414 for line in lines)


def test_made_up_methods_do_not_grow_metrics(server):
    for n in range(40):
        raw(server, f"X{n:05d} /x{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    assert "X00001" not in text and "/x1" not in text
    assert (
        metric_sample(
            text,
            "orchestrator_http_requests_total",
            method="other",
            endpoint="unmatched",
            status="405",
        )
        + metric_sample(
            text,
            "orchestrator_http_requests_total",
            method="other",
            endpoint="unmatched",
            status="404",
        )
        >= 40
    )


def test_a_chunked_body_with_a_bad_chunk_size_is_400(server):
    body = b"zz\r\nabc\r\n0\r\n\r\n"
    answer = raw(
        server,
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nX-API-Key: " + HEADERS["agent"]["X-API-Key"].encode()
        + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        + b"Connection: close\r\n\r\n" + body,
    )  # fmt: skip
    assert status_of(answer) == 400, answer[:300]
    assert "chunk" in json.loads(answer.partition(b"\r\n\r\n")[2])["detail"].lower()


def mint(server, as_: str, **body) -> dict:
    """POST /auth/token as a role: a bearer header for the token it issues."""
    response = requests.post(f"{server.url}/auth/token", json=body, headers=HEADERS[as_], timeout=5)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.parametrize("sub", ["someone-else", "APIKEY:ADMIN", "ApiKey:Admin"])
def test_an_admin_cannot_approve_its_own_task_through_a_minted_token(server, sub):
    created = requests.post(
        f"{server.url}/tasks", json={"type": "deploy"}, headers=HEADERS["admin"], timeout=5
    ).json()
    other = mint(server, "admin", sub=sub)
    url = f"{server.url}/approvals/{created['approval_id']}/approve"
    assert requests.post(url, headers=other, timeout=5).status_code == 403
    # Laundering: the delegated token mints a plain-looking one for its own subject.
    relaunder = mint_with(server, other)
    assert requests.post(url, headers=relaunder, timeout=5).status_code == 403
    decided = requests.post(url, headers=HEADERS["ops"], timeout=5)
    assert decided.status_code == 200


def mint_with(server, headers: dict) -> dict:
    """POST /auth/token with a bearer header: the token it issues for the same subject."""
    response = requests.post(f"{server.url}/auth/token", json={}, headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_history_shows_who_acted_for_the_decider(server):
    created = requests.post(
        f"{server.url}/tasks", json={"type": "deploy"}, headers=HEADERS["agent"], timeout=5
    ).json()
    delegated = mint(server, "admin", sub="release-bot", role="agent")
    decided = requests.post(
        f"{server.url}/approvals/{created['approval_id']}/approve", headers=delegated, timeout=5
    )
    assert decided.status_code == 200
    approval = decided.json()["approval"]
    assert approval["decided_by"] == "release-bot"
    assert approval["decided_by_act"] == ["apikey:admin"]
    history = requests.get(
        f"{server.url}/approvals/history", headers=HEADERS["user"], timeout=5
    ).json()["approvals"]
    mine = [a for a in history if a["approval_id"] == created["approval_id"]]
    assert mine[0]["decided_by_act"] == ["apikey:admin"]


def test_failed_authentications_are_limited_per_address_before_anything_else(live_server):
    server = live_server(
        workers=2, ORCHESTRATOR_RATE_LIMIT_AUTH_FAILURES="5", ORCHESTRATOR_TRUSTED_PROXIES="1"
    )
    url, attacker = f"{server.url}/tasks/x", {"X-Forwarded-For": "203.0.113.7"}

    def get(key: str):
        return requests.get(url, headers={**attacker, "X-API-Key": key}, timeout=5)

    bad = [get(f"guess-{n:020d}") for n in range(8)]
    assert [r.status_code for r in bad] == [401] * 5 + [429] * 3
    good, guess = get(HEADERS["user"]["X-API-Key"]), get("guess-" + "9" * 20)
    # A valid key from a blocked address answers exactly like an invalid one.
    assert good.status_code == guess.status_code == 429
    assert good.json() == guess.json() == {"detail": bad[-1].json()["detail"]}
    assert {k for k in good.headers if k.startswith("X-RateLimit")} == set()
    assert int(good.headers["Retry-After"]) > 0
    # Another address is not affected.
    assert requests.get(url, headers=HEADERS["user"], timeout=5).status_code == 404
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    assert metric_sample(text, "orchestrator_auth_failure_limited_total") == 5


@pytest.mark.parametrize(
    ("event_type", "source_agent", "rule"),
    [
        ("approval.approved", "ops_agent", "approval.*"),
        ("task.completed", "dev_agent", "task.*"),
        ("webhook.test", "dev_agent", "webhook.*"),
        ("deploy.succeeded", "orchestrator", "orchestrator"),
        ("deploy.succeeded", "ＯＲＣＨＥＳＴＲＡＴＯＲ", "orchestrator"),
    ],
)
def test_clients_cannot_publish_as_the_service(server, event_type, source_agent, rule):
    body = {"event_type": event_type, "source_agent": source_agent, "payload": {}}
    response = requests.post(
        f"{server.url}/events/publish", json=body, headers=HEADERS["admin"], timeout=5
    )
    assert response.status_code == 403 and rule in response.json()["detail"]


def test_stored_events_name_the_principal_that_published_them(server):
    body = {"event_type": "deploy.succeeded", "source_agent": "ops_agent", "payload": {}}
    published = requests.post(
        f"{server.url}/events/publish", json=body, headers=HEADERS["agent"], timeout=5
    ).json()
    events = requests.get(
        f"{server.url}/events", params={"type": "deploy.succeeded"}, headers=HEADERS["user"],
        timeout=5,
    ).json()["events"]  # fmt: skip
    mine = [e for e in events if e["event_id"] == published["event_id"]]
    assert mine[0]["published_by"] == "apikey:agent"
    own = requests.get(
        f"{server.url}/events", params={"type": "task.created"}, headers=HEADERS["user"], timeout=5
    ).json()["events"]
    assert own and {e["published_by"] for e in own} == {"orchestrator"}


@pytest.mark.parametrize(
    ("environment", "gated"),
    [
        ("prod-eu", True),
        ("live", True),
        (False, True),
        (0, True),
        ([], True),
        ("pr\u043eduction", True),  # a Cyrillic o
        ("staging", False),
        (" STAGING ", False),
        ("\uff53\uff54\uff41\uff47\uff49\uff4e\uff47", False),  # full-width "staging"
    ],
)
def test_the_gate_fails_closed_on_unlisted_environments(server, environment, gated):
    body = {"type": "deploy", "priority": "P3", "payload": {"environment": environment}}
    response = requests.post(f"{server.url}/tasks", json=body, headers=HEADERS["agent"], timeout=5)
    assert response.status_code == 201
    status = response.json()["task"]["status"]
    assert status == ("awaiting_approval" if gated else "assigned")


def test_a_scoped_key_claims_and_reports_only_for_its_agents(live_server):
    scoped_key = "scoped-key-0123456789abcdef"
    server = live_server(
        workers=1, ORCHESTRATOR_API_KEY_DEVBOT=f"{scoped_key}:agent:dev_agent+faq_agent"
    )
    scoped = {"X-API-Key": scoped_key}

    def call(method: str, path: str, headers: dict, **body):
        return requests.request(
            method, f"{server.url}{path}", json=body, headers=headers, timeout=5
        )

    ops_task = call("POST", "/tasks", HEADERS["agent"], type="monitor", priority="P3").json()
    call("POST", "/tasks", HEADERS["agent"], type="bugfix", priority="P3")
    refused = call("POST", "/tasks/claim", scoped, agent="ops_agent")
    assert refused.status_code == 403 and "dev_agent" in refused.json()["detail"]
    for path, body in [
        (f"/tasks/{ops_task['task_id']}/status", {"status": "completed"}),
        (f"/tasks/{ops_task['task_id']}/cancel", {}),
    ]:
        method = "PATCH" if path.endswith("status") else "POST"
        assert call(method, path, scoped, **body).status_code == 403
    assert (
        call("GET", f"/tasks/{ops_task['task_id']}", HEADERS["user"]).json()["task"]["status"]
        == "assigned"
    )
    claimed = call("POST", "/tasks/claim", scoped, agent="dev_agent")
    assert claimed.status_code == 200
    done = call("PATCH", f"/tasks/{claimed.json()['task_id']}/status", scoped, status="completed")
    assert done.status_code == 200
    # An unscoped key keeps today's behaviour.
    assert call("POST", "/tasks/claim", HEADERS["agent"], agent="ops_agent").status_code == 200
