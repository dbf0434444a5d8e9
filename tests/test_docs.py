"""API docs: the OpenAPI 3 spec, and Swagger UI and ReDoc rendering with no internet access."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from app.docs import STATIC
from app.domain.model import DEFAULT_ROUTES, PRIORITIES, ROLES, TOKEN_TYPE
from tests.helpers import CHROMIUM_FLAGS, chromium

# Every endpoint (README.md, API in one table), as (method, OpenAPI path).
SPEC_ENDPOINTS = [
    ("get", "/"),
    ("get", "/health"),
    ("get", "/stats"),
    ("post", "/auth/token"),
    ("post", "/tasks"),
    ("get", "/tasks"),
    ("get", "/tasks/{task_id}"),
    ("patch", "/tasks/{task_id}/status"),
    ("post", "/tasks/{task_id}/cancel"),
    ("post", "/tasks/claim"),
    ("post", "/tasks/{task_id}/heartbeat"),
    ("post", "/events/publish"),
    ("get", "/events"),
    ("get", "/approvals/pending"),
    ("get", "/approvals/history"),
    ("get", "/approvals/{approval_id}"),
    ("post", "/approvals/{approval_id}/approve"),
    ("post", "/approvals/{approval_id}/reject"),
    ("get", "/metrics"),
]
OPTIONAL = {"/metrics"}  # Prometheus text; documented when the app serves it
PROTECTED = [
    (m, p) for m, p in SPEC_ENDPOINTS if p.startswith(("/tasks", "/events", "/approvals", "/auth"))
]


@pytest.fixture
def spec(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def resolve(spec: dict, node: dict) -> dict:
    """Follow a local $ref."""
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def routed_paths(app) -> set[str]:
    """The app's URL rules, in OpenAPI path syntax."""
    return {
        re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules()
    }


def test_spec_is_openapi_3_with_every_spec_endpoint(app, spec):
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "Orchestrator API" and spec["info"]["version"]
    routed = routed_paths(app)
    missing = [
        f"{m.upper()} {p}"
        for m, p in SPEC_ENDPOINTS
        if (p not in OPTIONAL or p in routed) and m not in spec["paths"].get(p, {})
    ]
    assert missing == []


def test_spec_declares_both_auth_schemes(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["apiKeyAuth"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    # /metrics' optional ORCHESTRATOR_METRICS_TOKEN is a third, separate scheme.
    assert schemes["metricsToken"]["scheme"] == "bearer"
    assert spec["paths"]["/metrics"]["get"]["security"] == [{"metricsToken": []}, {}]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_protected_operations_name_both_schemes(spec, method, path):
    operation = spec["paths"][path][method]
    assert {"bearerAuth": []} in operation["security"]
    assert {"apiKeyAuth": []} in operation["security"]


def test_create_schema_lists_the_fifteen_task_types(spec):
    body = spec["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]
    task_type = resolve(spec, resolve(spec, body["schema"])["properties"]["type"])
    documented = set(task_type.get("enum", [])) or {
        t for t in DEFAULT_ROUTES if t in task_type.get("description", "")
    }
    assert documented == set(DEFAULT_ROUTES) and len(documented) == 15


@pytest.mark.parametrize(
    ("schema", "field", "values"),
    [
        ("Task", "priority", list(PRIORITIES)),
        ("Approval", "priority", [*PRIORITIES, None]),
        ("Token", "role", list(ROLES)),
        ("Token", "token_type", [TOKEN_TYPE]),
    ],
)
def test_answers_document_the_values_a_field_can_take(spec, schema, field, values):
    """A client generated from the spec gets an enum wherever the service only ever
    answers one of a fixed set of values."""
    assert spec["components"]["schemas"][schema]["properties"][field]["enum"] == values


def test_delivery_answers_document_their_number_ranges(spec):
    props = spec["components"]["schemas"]["Delivery"]["properties"]
    assert props["attempts"]["minimum"] == 0
    assert (props["last_status_code"]["minimum"], props["last_status_code"]["maximum"]) == (
        100,
        599,
    )


def local_assets(html: str) -> list[str]:
    """Every script src and stylesheet href of a page."""
    return re.findall(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="([^"]+)"', html)


def test_swagger_ui_page_references_only_local_assets(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assets = local_assets(html)
    assert len(assets) >= 3 and all(a.startswith("/docs/assets/") for a in assets), assets
    assert "//" not in "".join(assets)
    assert '"validatorUrl": null' in html  # no badge fetched from validator.swagger.io
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.get_data()) > 1000, asset


def test_redoc_page_uses_the_vendored_bundle(client):
    response = client.get("/redoc")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert local_assets(response.get_data(as_text=True)) == ["/docs/static/redoc.standalone.js"]
    bundle = client.get("/docs/static/redoc.standalone.js")
    assert bundle.status_code == 200
    assert bundle.get_data() == (STATIC / "redoc.standalone.js").read_bytes()
    assert "MIT License" in (STATIC / "redoc.LICENSE").read_text()


@pytest.mark.parametrize("path", ["/docs/assets/../../config.py", "/docs/static/../docs.py"])
def test_doc_assets_do_not_escape_their_directory(client, path):
    assert client.get(path).status_code == 404


# --- rendering in a real browser, offline ------------------------------------------------


def render(url: str, profile: Path) -> str:
    """The DOM of `url` after its scripts ran, with every non-loopback host unresolvable."""
    command = [
        chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        dom, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the browser and its helpers
            process.wait()
    assert process.returncode == 0
    return dom


def test_swagger_ui_renders_offline(live_server, tmp_path):
    server = live_server(workers=1)
    dom = render(f"{server.url}/docs", tmp_path / "profile")
    blocks = re.findall(r'class="opblock opblock-(get|post|patch|delete|put)\b', dom)
    assert len(blocks) >= 17, dom[-2000:]
    rendered = set(re.findall(r'data-path="([^"]+)"', dom))
    assert {
        "/tasks",
        "/tasks/claim",
        "/tasks/{task_id}/status",
        "/events/publish",
        "/approvals/{approval_id}/approve",
        "/health",
    } <= rendered
    assert "Failed to load API definition" not in dom
    # Every script and stylesheet the page used came from this server.
    assert not re.search(r'<(?:script|link)[^>]*(?:src|href)="https?://(?!127\.0\.0\.1)', dom)


def test_redoc_renders_offline(live_server, tmp_path):
    server = live_server(workers=1)
    dom = render(f"{server.url}/redoc", tmp_path / "profile")
    # ReDoc names each operation's section after its operationId.
    operations = set(re.findall(r'data-section-id="operation/([^"]+)"', dom))
    assert "tasks_claim_task" in operations, dom[-2000:]
    assert len(operations) >= 17
    assert "Something went wrong" not in dom
