"""Helpers several test files share: the `api` object, Redis key names, timestamps, Chromium."""

from __future__ import annotations

import re
import shutil
from datetime import datetime

import pytest
import requests

from app.domain.keys import EVENTS_FIELD, Keys

# Headless Chromium as root in a container, offline: every host but loopback is
# unresolvable, so a page that reaches for the internet fails visibly.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def chromium() -> str:
    """The Chromium binary; the test fails (never skips) without one."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "chromium is not installed: apt-get install -y chromium (.ci/run does it); "
            "the browser tests need a real browser"
        )
    return found


# P3 bugfix: routed to dev_agent and never gated, the plainest task there is.
PLAIN_TASK = {"type": "bugfix", "priority": "P3"}


class Api:
    """flaskr's AuthActions for this API: call as a role, assert the status, get the body.

    `as_` names a role of the `keys` fixture ("agent", "ops", "user", "admin"), or is a
    header dict (a bearer token), or None (anonymous). `expect` is the status the call
    must answer; pass another to check a refusal, or None to check nothing.
    """

    def __init__(self, client, headers: dict[str, dict[str, str]]):
        self.client = client
        self.headers = headers

    def using(self, client) -> Api:
        """The same helper on another test client (an app built with make_app)."""
        return Api(client, self.headers)

    def call(self, method: str, path: str, *, as_="user", expect: int | None = 200, **kwargs):
        """Any request: the parsed JSON body, or None for an empty one (a 204)."""
        headers = self.headers[as_] if isinstance(as_, str) else (as_ or {})
        response = self.client.open(path, method=method, headers=headers, **kwargs)
        if expect is not None:
            assert response.status_code == expect, (
                f"{method} {path} as {as_}: {response.status_code} "
                f"{response.get_data(as_text=True)[:500]}"
            )
        return response.json if response.data else None

    def create(self, *, as_="agent", expect=201, **body) -> dict:
        """POST /tasks: PLAIN_TASK with `body` on top."""
        return self.call("POST", "/tasks", as_=as_, expect=expect, json={**PLAIN_TASK, **body})

    def task(self, task_id: str, *, as_="user") -> dict:
        """GET /tasks/<id>: the task record."""
        return self.call("GET", f"/tasks/{task_id}", as_=as_)["task"]

    def claim(self, agent="dev_agent", *, as_="agent", expect=200, **body) -> dict | None:
        """POST /tasks/claim for `agent` (lease_seconds=... in `body`); None for a 204."""
        json = {"agent": agent, **body}
        return self.call("POST", "/tasks/claim", as_=as_, expect=expect, json=json)

    def status(self, task_id: str, status: str, *, as_="agent", expect=200, **body) -> dict:
        """PATCH /tasks/<id>/status with {"status": status, **body}."""
        path = f"/tasks/{task_id}/status"
        return self.call("PATCH", path, as_=as_, expect=expect, json={"status": status, **body})

    def cancel(self, task_id: str, *, as_="agent", expect=200, **body) -> dict:
        """POST /tasks/<id>/cancel (reason=... in `body`)."""
        path = f"/tasks/{task_id}/cancel"
        return self.call("POST", path, as_=as_, expect=expect, json=body or None)

    def heartbeat(self, task_id: str, *, as_="agent", expect=200, **body) -> dict:
        """POST /tasks/<id>/heartbeat (lease_seconds=... in `body`)."""
        path = f"/tasks/{task_id}/heartbeat"
        return self.call("POST", path, as_=as_, expect=expect, json=body or None)

    def decide(self, approval_id: str, verb: str, *, as_="ops", expect=200, **body) -> dict:
        """POST /approvals/<id>/<verb>, verb "approve" or "reject", with `body` as JSON."""
        path = f"/approvals/{approval_id}/{verb}"
        return self.call("POST", path, as_=as_, expect=expect, json=body or None)

    def approve(self, approval_id: str, **kwargs) -> dict:
        """POST /approvals/<id>/approve (comment=...; as_ defaults to "ops")."""
        return self.decide(approval_id, "approve", **kwargs)

    def reject(self, approval_id: str, **kwargs) -> dict:
        """POST /approvals/<id>/reject (reason=..., comment=...; as_ defaults to "ops")."""
        return self.decide(approval_id, "reject", **kwargs)

    def approval(self, approval_id: str, *, as_="user") -> dict:
        """GET /approvals/<id>: the approval record."""
        return self.call("GET", f"/approvals/{approval_id}", as_=as_)

    def events(self, *, as_="user", **query) -> dict:
        """GET /events with `query`: the page."""
        return self.call("GET", "/events", as_=as_, query_string=query)

    def stats(self) -> dict:
        """GET /stats."""
        return self.call("GET", "/stats", as_=None)

    def health(self, *, expect=200) -> dict:
        """GET /health."""
        return self.call("GET", "/health", as_=None, expect=expect)


class LiveResponse:
    """A requests response with the test client's attributes Api reads."""

    def __init__(self, response: requests.Response):
        self.status_code = response.status_code
        self.headers = response.headers
        self.data = response.content
        self.json = response.json() if response.content else None

    def get_data(self, as_text: bool = False):
        """The body, as text when asked."""
        return self.data.decode() if as_text else self.data


class LiveClient:
    """The Flask test client's open() over HTTP, so Api drives a live server too."""

    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()

    def open(self, path: str, *, method: str, headers=None, json=None, query_string=None):
        """One request; the answer as a LiveResponse."""
        response = self.session.request(
            method, self.url + path, headers=headers, json=json, params=query_string, timeout=10
        )
        return LiveResponse(response)


def redis_keys(app) -> Keys:
    """The Redis key names of an app (or of a live server's environment)."""
    if isinstance(app, dict):
        return Keys(app["ORCHESTRATOR_QUEUE_PREFIX"])
    return Keys(app.extensions["orchestrator.settings"].queue_prefix)


def stream_types(redis_client, app, task_id: str) -> list[str]:
    """Event types stored for one task, oldest first, read straight from the stream."""
    entries = redis_client.xrange(redis_keys(app).name("events"))
    return [fields["type"] for _, fields in entries if fields.get("task_id") == task_id]


def event_field_ids(text: str) -> list[str]:
    """The stream ids a task hash's event index field holds: the first in full, each next
    one as `<ms minus the first's ms>-<seq>` (lib.lua)."""
    first, *rest = text.split(",")
    base = int(first.split("-")[0])
    return [first] + [f"{base + int(ms)}-{seq}" for ms, seq in (part.split("-") for part in rest)]


def task_event_ids(redis_client, keys: Keys, task_id: str) -> list[str]:
    """A task's event index as stored: its hash's field or its list, never both."""
    text = redis_client.hget(keys.task(task_id), EVENTS_FIELD)
    listed = redis_client.lrange(keys.name("task_events", task_id), 0, -1)
    assert not (text and listed), f"{task_id}: an event index field and a list"
    return event_field_ids(text) if text else listed


def every_route(redis_client, keys: Keys) -> list[tuple[str, str]]:
    """(type, agent) of every route index stored (SCAN), after checking each is named in
    `routes`, where a type's or an agent's listing looks for its route indexes."""
    head = keys.name("by_route", "", "")[:-1]
    routes = [
        tuple(name[len(head) :].split(":"))
        for name in redis_client.scan_iter(match=keys.name("by_route", "*", "*"), count=1000)
    ]
    named = redis_client.smembers(keys.name("routes"))
    assert {f"{task_type}:{agent}" for task_type, agent in routes} <= named, (routes, named)
    return routes


def metric_sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if found == wanted:
            return float(match.group(3))
    return 0.0


def parse_time(stamp: str) -> datetime:
    """An ISO 8601 UTC stamp as the API writes it (trailing Z) -> an aware datetime."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
