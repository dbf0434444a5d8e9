"""What the approval-policy tests share: the policy, its people, and a live-server client."""

from __future__ import annotations

import hashlib
import json

import requests

from tests.conftest import HEADERS, mint_token

SRE = [f"sre-{i}" for i in range(10)]
WEB = ["web-0", "web-1", "apikey:ops"]
POLICY = [
    {
        "name": "production-deploys",
        "match": {"types": ["deploy", "deployment"], "environments": ["production"]},
        "required": 2,
        "approvers": ["group:sre"],
    },
    {
        "name": "feature-flags",
        "match": {"types": ["feature"]},
        "required": 1,
        "approvers": ["group:web"],
        "timeout": 3,
        "on_timeout": {"escalate_to": ["role:admin"], "extend": 3},
    },
    {
        "name": "urgent-fixes",
        "match": {"types": ["bugfix"], "priorities": ["P0"]},
        "required": 1,
        "approvers": ["apikey:ops"],
        "timeout": 2,
    },
    {
        "name": "staging-refactors",
        "match": {"types": ["refactor"], "environments": ["staging"]},
        "required": 1,
        "approvers": ["role:admin"],
    },
]


def policy_env(**overrides: str) -> dict[str, str]:
    """The variables that configure POLICY and its groups."""
    return {
        "ORCHESTRATOR_APPROVAL_POLICY": json.dumps(POLICY),
        "ORCHESTRATOR_GROUP_SRE": ",".join(SRE),
        "ORCHESTRATOR_GROUP_WEB": ",".join(WEB),
        **overrides,
    }


def bearer(sub: str, role: str = "agent") -> dict[str, str]:
    """Headers of a principal known only by its JWT `sub`."""
    return {"Authorization": f"Bearer {mint_token(sub, role)}"}


def who(name: str | None) -> dict[str, str]:
    """A conftest API key name ("agent", "ops", ...), a JWT sub (role agent), or None."""
    if name is None:
        return {}
    return dict(HEADERS[name]) if name in HEADERS else bearer(name)


def sha256_of(payload) -> str:
    """The receipt hash, computed here independently of the service."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class Live:
    """A live server as a person or agent: call(...) checks the status, returns the body."""

    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()

    def call(
        self, method: str, path: str, as_: str | None = "user", expect: int | None = 200, **kw
    ):
        """One request as `as_`; asserts `expect` unless None."""
        response = self.session.request(
            method, f"{self.url}{path}", headers=who(as_), timeout=10, **kw
        )
        if expect is not None:
            assert response.status_code == expect, (method, path, as_, response.text[:500])
        return response.json() if response.content else None

    def create(self, as_: str = "agent", **body) -> dict:
        """POST /tasks (201); the body."""
        return self.call("POST", "/tasks", as_, 201, json=body)

    def approve(self, approval_id: str, as_: str, expect: int = 200, **body) -> dict:
        """POST /approvals/<id>/approve with `body`."""
        path = f"/approvals/{approval_id}/approve"
        return self.call("POST", path, as_, expect, json=body or None)

    def reject(self, approval_id: str, as_: str, expect: int = 200, **body) -> dict:
        """POST /approvals/<id>/reject with `body`."""
        path = f"/approvals/{approval_id}/reject"
        return self.call("POST", path, as_, expect, json=body or None)

    def approval(self, approval_id: str) -> dict:
        """GET /approvals/<id>."""
        return self.call("GET", f"/approvals/{approval_id}")

    def task(self, task_id: str) -> dict:
        """GET /tasks/<id>: the task."""
        return self.call("GET", f"/tasks/{task_id}")["task"]

    def explain(self, task_id: str) -> dict:
        """GET /tasks/<id>/explain."""
        return self.call("GET", f"/tasks/{task_id}/explain")

    def events(self, task_id: str, event_type: str | None = None) -> list[dict]:
        """The task's events, oldest first, optionally of one type."""
        query = {"task_id": task_id, "order": "asc", **({"type": event_type} if event_type else {})}
        return self.call("GET", "/events", params=query)["events"]
