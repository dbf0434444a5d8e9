"""Property-based fuzzing of every operation in the OpenAPI spec against a live gunicorn.

schemathesis generates valid and invalid requests from the spec (examples, coverage and
fuzzing phases, positive and negative data) and checks every response: no 5xx, a
documented status code, a documented content type, a body that matches the documented
schema, invalid input rejected, valid input accepted, and auth actually enforced.

The spec is built in-process and parametrized at import time (one test per operation),
because schemathesis' lazy `from_fixture` loader breaks on pytest 9.2 (it writes
`request.node._nodeid`, which pytest no longer has); a test proves that this spec is
exactly the one the live server serves at /openapi.json. The live fuzzing is marked
`slow`; the spec's error listing and the regressions the fuzzer found run in-process.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    positive_data_acceptance,
)

from app import create_app
from tests.conftest import HEADERS, base_env

ADMIN = HEADERS["admin"]
AGENT = HEADERS["agent"]
OPS = HEADERS["ops"]
MAX_EXAMPLES = 40  # per operation and phase: bounded, so the module runs in ~20 s
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
GUNICORN_REQUEST_LINE_LIMIT = 4094  # gunicorn.conf.py limit_request_line
# Answers a documented operation may give without listing them: 405, when the method
# sent differs from the documented one. Everything else must be listed explicitly, not
# just covered by the spec's catch-all `default` response.
UNLISTED_STATUSES = {405}

# Schema-valid requests that are still rightly refused with 422, by rules no OpenAPI
# schema can express:
VALID_BUT_REFUSED = (
    # A cursor is opaque: only one the service issued is valid (README.md, GET /tasks).
    {"cursor": ["Malformed cursor."]},
    # An Idempotency-Key already used with another body (schemathesis reuses short keys).
    {"Idempotency-Key": ["Reused with a different body."]},
    # PATCH status: `status` is required in the query or the body, either one.
    {"status": ["Missing data for required field."]},
    # A create's run time: one of run_at and delay_seconds, and run_at ahead by Redis' clock.
    {"run_at": ["Give run_at or delay_seconds, not both."]},
    {"run_at": ["Must be in the future and at most 30 days ahead."]},
)
# Refusals that depend on configuration or on what a URL's host is, not on its shape:
# a private address (ORCHESTRATOR_WEBHOOK_ALLOW_PRIVATE) or approvers without
# ORCHESTRATOR_PUBLIC_URL.
REFUSED_BY_CONFIGURATION = ("Invalid webhook URL", "Decision links need ORCHESTRATOR_PUBLIC_URL")

# A create's depends_on must name stored tasks; the message lists the unknown ones.
UNKNOWN_DEPENDENCIES = "Unknown task ids: "


def _spec() -> dict:
    """The OpenAPI document, from an app on the in-process fake Redis (no server needed)."""
    response = create_app(base_env("memory://")).test_client().get("/openapi.json")
    assert response.status_code == 200, response.data
    return response.json


SPEC = _spec()
schema = schemathesis.openapi.from_dict(SPEC)
# Our credentials come from ADMIN; generated Authorization/X-API-Key values would only
# turn most requests into 401s (the ignored_auth check still probes missing auth).
schema.config.generation.update(
    max_examples=MAX_EXAMPLES, deterministic=True, with_security_parameters=False
)


@pytest.fixture(scope="module")
def fuzz_server(module_live_server):
    """gunicorn with two workers on the session Redis, shared by every operation's test."""
    return module_live_server(workers=2)


def status_code_is_listed(ctx, response, case) -> None:
    """Every status is listed for its operation, not merely covered by `default`."""
    documented = SPEC["paths"][case.operation.path].get(case.method.lower())
    if documented is None:
        return  # OPTIONS, HEAD or an unsupported method: schemathesis' own checks cover it
    listed = {int(code) for code in documented["responses"] if code.isdigit()}
    assert response.status_code in listed | UNLISTED_STATUSES, (
        f"{case.method} {case.operation.path} answered {response.status_code}, "
        f"which the spec does not list (listed: {sorted(listed)})"
    )


def refused_by_gunicorn(response) -> bool:
    """An over-long request line may be refused by gunicorn itself (400/414)."""
    line = f"{response.request.method} {response.request.path_url} HTTP/1.1"
    if len(line) <= GUNICORN_REQUEST_LINE_LIMIT:
        return False
    assert response.status_code in (400, 414), (response.status_code, response.text[:200])
    assert "Request Line is too large" in response.text
    return True


def tolerated_checks(case, response) -> list:
    """Checks that cannot hold for this one request, each for a reason the spec can't say."""
    excluded = []
    errors = response.json().get("errors") if response.status_code == 422 else None
    unknown = errors and list(errors) == ["depends_on"]
    if response.status_code == 422 and (
        errors in VALID_BUT_REFUSED
        or response.json().get("detail") in REFUSED_BY_CONFIGURATION
        or (unknown and errors["depends_on"][0].startswith(UNKNOWN_DEPENDENCIES))
    ):
        excluded.append(positive_data_acceptance)
    if case.method == "OPTIONS" and case.operation.path in ("/tasks/claim", "/tasks/redrive"):
        # Flask's automatic OPTIONS answers for every rule matching the URL, and
        # GET /tasks/{task_id} matches /tasks/claim and /tasks/redrive too (404 there).
        excluded.append(allow_header_conformance)
    return excluded


OPERATIONS = [
    (method.upper(), path)
    for path, item in SPEC["paths"].items()
    for method in item
    if method in ("get", "post", "patch", "put", "delete")
]


def errors_it_can_answer(path: str, operation: dict) -> set[str]:
    """The error statuses an operation can answer, from what it is (not from its docs)."""
    codes = set() if path == "/health" else {"429", "503"}  # the limiter asks Redis first
    if any(operation.get("security", [])):  # at least one scheme, not only `{}`
        codes.add("401")
    if "requestBody" in operation:
        codes |= {"400", "413", "422"}  # malformed JSON, too large, invalid
    if "{" in path:
        codes.add("404")
    return codes


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_operation_lists_every_error_it_can_answer(method, path):
    # The fuzzing below meets no rate limit and no outage: this catches those gaps.
    operation = SPEC["paths"][path][method.lower()]
    assert errors_it_can_answer(path, operation) <= set(operation["responses"])


# Values schemathesis found accepted although the spec refuses them (now 422).
FOUND_BY_FUZZING = [
    ("/tasks", {"type": "faq", "requires_approval": 0}, "requires_approval"),
    ("/tasks", {"type": "faq", "requires_approval": "yes"}, "requires_approval"),
    ("/tasks", {"type": "faq", "max_retries": 2.5}, "max_retries"),  # was cut to 2
    ("/tasks", {"type": "faq", "max_retries": "3"}, "max_retries"),
    ("/tasks/claim", {"agent": "dev_agent\n"}, "agent"),  # `$` allowed a trailing newline
    ("/tasks/claim", {"agent": "dev_agent", "lease_seconds": 1.5}, "lease_seconds"),
]


@pytest.mark.parametrize(("path", "body", "field"), FOUND_BY_FUZZING)
def test_values_the_fuzzer_found_are_refused(client, keys, path, body, field):
    response = client.post(path, json=body, headers=keys["agent"])
    assert response.status_code == 422
    assert list(response.json["errors"]) == [field]


@pytest.mark.slow
def test_fuzzed_spec_is_the_one_the_live_server_serves(fuzz_server):
    live = requests.get(f"{fuzz_server.url}/openapi.json", timeout=10)
    assert live.status_code == 200
    assert live.json() == SPEC


def call_and_validate(case, server) -> int:
    """Send the case as the admin and run every check on the answer; its status."""
    response = case.call(base_url=server.url, headers=ADMIN, timeout=10)
    if refused_by_gunicorn(response):
        return response.status_code
    case.validate_response(
        response,
        additional_checks=[status_code_is_listed],
        excluded_checks=tolerated_checks(case, response),
        headers=ADMIN,
        transport_kwargs={"base_url": server.url, "headers": ADMIN, "timeout": 10},
    )
    return response.status_code


@pytest.mark.slow
@schema.parametrize()
@HYPOTHESIS
def test_operation_conforms_to_the_spec(case, fuzz_server):
    call_and_validate(case, fuzz_server)


# Generated ids almost never exist, so the operations on one task or approval are also
# fuzzed against a fresh real one in each state: their 200 (and 403/409) bodies get
# checked too. The agent creates it, so the admin may decide its approval (four eyes);
# the admin moves it, so the admin holds its lease.
TASK_STATES = {
    "assigned": [],
    "awaiting_approval": [],
    "in_progress": ["in_progress"],
    "completed": ["completed"],
    "failed": ["in_progress", "failed"],
    "cancelled": ["cancelled"],
}
APPROVAL_STATES = {"pending": None, "approved": "approve", "rejected": "reject"}
ID_OPERATIONS = [(method, path) for method, path in OPERATIONS if "{" in path]


def seed(server, state: str) -> dict:
    """A new task in `state` (a task state, or its approval's state); its path ids."""
    if state == "webhook":
        return seed_webhook(server)
    gated = state in APPROVAL_STATES or state == "awaiting_approval"
    body = {"type": "bugfix", "priority": "P3", "requires_approval": gated}
    created = requests.post(f"{server.url}/tasks", json=body, headers=AGENT, timeout=10)
    assert created.status_code == 201, created.text
    task = created.json()["task"]
    for status in TASK_STATES.get(state, []):
        moved = requests.patch(
            f"{server.url}/tasks/{task['task_id']}/status",
            json={"status": status},
            headers=ADMIN,
            timeout=10,
        )
        assert moved.status_code == 200, moved.text
    if APPROVAL_STATES.get(state):
        decided = requests.post(
            f"{server.url}/approvals/{task['approval_id']}/{APPROVAL_STATES[state]}",
            headers=OPS,
            timeout=10,
        )
        assert decided.status_code == 200, decided.text
    return {"task_id": task["task_id"], "approval_id": task["approval_id"]}


def seed_webhook(server) -> dict:
    """A new webhook with one (test) delivery; its path ids."""
    body = {"url": "https://hooks.example.com/in", "events": ["task.*"]}
    created = requests.post(f"{server.url}/webhooks", json=body, headers=ADMIN, timeout=10)
    if created.status_code == 409:  # fuzzing filled the 100 subscriptions: make room
        listed = requests.get(f"{server.url}/webhooks", headers=ADMIN, timeout=10).json()
        oldest = listed["webhooks"][0]["webhook_id"]
        requests.delete(f"{server.url}/webhooks/{oldest}", headers=ADMIN, timeout=10)
        created = requests.post(f"{server.url}/webhooks", json=body, headers=ADMIN, timeout=10)
    assert created.status_code == 201, created.text
    webhook_id = created.json()["webhook_id"]
    sent = requests.post(f"{server.url}/webhooks/{webhook_id}/test", headers=ADMIN, timeout=10)
    assert sent.status_code == 202, sent.text
    return {"webhook_id": webhook_id, "delivery_id": sent.json()["delivery_id"]}


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), ID_OPERATIONS)
def test_operation_on_a_real_resource_conforms(fuzz_server, method, path):
    operation = schema[path][method]
    states = APPROVAL_STATES if "{approval_id}" in path else TASK_STATES
    if "{webhook_id}" in path:
        states = {"webhook": None}
    statuses = set()

    @given(case=operation.as_strategy(), state=st.sampled_from(sorted(states)))
    @HYPOTHESIS
    def check(case, state):
        ids = seed(fuzz_server, state)
        case.path_parameters = {name: ids[name] for name in case.path_parameters}
        statuses.add(call_and_validate(case, fuzz_server))

    check()
    # The success path was exercised, not only errors.
    assert any(200 <= status < 300 for status in statuses), statuses
