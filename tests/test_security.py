"""Authentication, roles, token issuance, CORS, body limits and secrets that never leak."""

from __future__ import annotations

import base64
import hashlib
import logging
import time
import uuid

import jwt as pyjwt
import pytest
import requests
from flask_jwt_extended import create_refresh_token

from app import create_app
from app.config import ConfigError, Settings
from app.domain.model import ROLE_RANK, ROLES
from tests.conftest import API_KEYS, JWT_SECRET, base_env, mint_token

MISSING_TASK = str(uuid.uuid4())
MISSING_APPROVAL = f"apr-{uuid.uuid4()}"
WWW_AUTHENTICATE = 'Bearer, ApiKey header="X-API-Key"'
RANK = {None: -1, **ROLE_RANK}
EVENT = {"event_type": "deploy.succeeded", "source_agent": "ops_agent", "payload": {"n": 1}}


@pytest.fixture(scope="module")
def api(redis_server):
    """One app for the read-mostly tables below; every case leaves it as it found it."""
    return create_app(base_env(redis_server.url)).test_client()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def credentials(kind: str | None, role: str | None) -> dict:
    """Headers for an anonymous caller, an API key or a PyJWT token of `role`."""
    if kind is None:
        return {}
    if kind == "key":
        return {"X-API-Key": API_KEYS[role]}
    return bearer(mint_token(f"jwt-{role}", role))


def assert_unauthorized(response, detail: str | None = None) -> None:
    assert response.status_code == 401, response.json
    assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert set(response.json) == {"detail"}
    if detail:
        assert response.json["detail"] == detail


# --- every endpoint against every role --------------------------------------------------

# (method, path, json, least role or None when public, status and body a strong enough
# caller gets). Ids are well-formed but unknown, so a 404 proves the caller got past auth.
ENDPOINTS = [
    ("GET", "/tasks", None, "user", 200, {"success": True}),
    ("GET", f"/tasks/{MISSING_TASK}", None, "user", 404, {"detail": "Task not found"}),
    ("POST", "/tasks", {"type": "faq", "priority": "P3"}, "agent", 201, {"success": True}),
    (
        "PATCH",
        f"/tasks/{MISSING_TASK}/status?status=completed",
        None,
        "agent",
        404,
        {"detail": "Task not found"},
    ),
    ("POST", f"/tasks/{MISSING_TASK}/cancel", None, "agent", 404, {"detail": "Task not found"}),
    # Tasks created above are faq tasks, so dev_agent's queue stays empty: 204.
    ("POST", "/tasks/claim", {"agent": "dev_agent"}, "agent", 204, None),
    ("POST", f"/tasks/{MISSING_TASK}/heartbeat", None, "agent", 404, {"detail": "Task not found"}),
    ("POST", "/events/publish", EVENT, "agent", 201, {"success": True}),
    ("GET", "/events", None, "user", 200, {"success": True}),
    ("GET", "/approvals/pending", None, "user", 200, {"success": True}),
    ("GET", "/approvals/history", None, "user", 200, {"success": True}),
    ("GET", f"/approvals/{MISSING_APPROVAL}", None, "user", 404, {"detail": "Approval not found"}),
    (
        "POST",
        f"/approvals/{MISSING_APPROVAL}/approve",
        None,
        "agent",
        404,
        {"detail": "Approval not found"},
    ),
    (
        "POST",
        f"/approvals/{MISSING_APPROVAL}/reject",
        None,
        "agent",
        404,
        {"detail": "Approval not found"},
    ),
    ("POST", "/auth/token", None, "user", 200, {"token_type": "bearer"}),
    ("GET", "/stats", None, None, 200, {"approvals": {"pending": 0}}),
    ("GET", "/health", None, None, 200, {"status": "healthy"}),
    ("GET", "/", None, None, 200, {"status": "running"}),
]
CALLERS = [(None, None)] + [(kind, role) for kind in ("key", "jwt") for role in ROLES]


def expected_denial(kind: str | None, role: str | None, path: str, needed: str | None):
    """401, 403 or None (allowed) for this caller on this endpoint."""
    if needed is None:
        return None
    if kind is None:
        return 401
    if path == "/auth/token" and kind == "jwt" and role != "admin":
        return 403  # tokens are traded for API keys; only an admin's token mints another
    return 403 if RANK[role] < RANK[needed] else None


@pytest.mark.parametrize(
    ("kind", "role"), CALLERS, ids=[f"{k}-{r}" if k else "anonymous" for k, r in CALLERS]
)
@pytest.mark.parametrize(
    ("method", "path", "body", "needed", "ok_status", "ok_body"),
    ENDPOINTS,
    ids=[f"{m} {p.split('?')[0]}" for m, p, *_ in ENDPOINTS],
)
def test_role_matrix(api, kind, role, method, path, body, needed, ok_status, ok_body):
    response = api.open(path, method=method, json=body, headers=credentials(kind, role))
    denial = expected_denial(kind, role, path, needed)
    if denial == 401:
        assert_unauthorized(response, "Not authenticated")
    elif denial == 403:
        assert response.status_code == 403, response.json
        assert set(response.json) == {"detail"}
    else:
        assert response.status_code == ok_status, response.json
        if ok_body is None:
            assert response.data == b""
        else:
            assert ok_body.items() <= response.json.items()


# --- every way a credential can be bad --------------------------------------------------


def _now() -> int:
    return int(time.time())


def _refresh_token(app) -> str:
    with app.app_context():
        return create_refresh_token("jwt-admin", additional_claims={"role": "admin"})


BAD_AUTHORIZATION = {
    "wrong signature": lambda app: bearer(mint_token("x", "admin", secret="not-the-secret" * 3)),
    "alg none": lambda app: bearer(
        pyjwt.encode(
            {"sub": "x", "role": "admin", "iat": _now(), "exp": _now() + 60}, None, algorithm="none"
        )
    ),
    "alg HS512": lambda app: bearer(
        pyjwt.encode(
            {"sub": "x", "role": "admin", "iat": _now(), "exp": _now() + 60},
            JWT_SECRET,
            algorithm="HS512",
        )
    ),
    "expired": lambda app: bearer(mint_token("x", "admin", expires_in=-30)),
    "not yet valid": lambda app: bearer(mint_token("x", "admin", nbf=_now() + 600)),
    "integer sub": lambda app: bearer(mint_token(123, "admin")),
    "empty sub": lambda app: bearer(mint_token("", "admin")),
    "missing sub": lambda app: bearer(
        pyjwt.encode(
            {"role": "admin", "iat": _now(), "exp": _now() + 60}, JWT_SECRET, algorithm="HS256"
        )
    ),
    "unknown role": lambda app: bearer(mint_token("x", "superuser")),
    "list role": lambda app: bearer(mint_token("x", ["admin"])),
    "missing role": lambda app: bearer(
        pyjwt.encode({"sub": "x", "iat": _now(), "exp": _now() + 60}, JWT_SECRET, algorithm="HS256")
    ),
    "refresh token": lambda app: bearer(_refresh_token(app)),
    "missing exp": lambda app: bearer(
        pyjwt.encode({"sub": "x", "role": "admin", "iat": _now()}, JWT_SECRET, algorithm="HS256")
    ),
    "text exp": lambda app: bearer(
        pyjwt.encode(
            {"sub": "x", "role": "admin", "iat": _now(), "exp": "never"},
            JWT_SECRET,
            algorithm="HS256",
        )
    ),
    "garbage": lambda app: {"Authorization": "Bearer not.a.jwt"},
    "empty bearer": lambda app: {"Authorization": "Bearer "},
    "basic scheme": lambda app: {
        "Authorization": "Basic " + base64.b64encode(f"{API_KEYS['admin']}:".encode()).decode()
    },
    "raw api key as authorization": lambda app: {"Authorization": API_KEYS["admin"]},
    "unknown api key": lambda app: {"X-API-Key": "no-such-key-0123456789abcdef"},
    "api key with a suffix": lambda app: {"X-API-Key": API_KEYS["admin"] + "x"},
    "empty api key": lambda app: {"X-API-Key": ""},
    # A bad bearer is never papered over by a good key sent alongside it.
    "bad bearer with a good key": lambda app: {
        "Authorization": "Bearer junk",
        "X-API-Key": API_KEYS["admin"],
    },
}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # alg HS512
@pytest.mark.parametrize("case", BAD_AUTHORIZATION)
def test_every_bad_credential_is_401_with_www_authenticate(app, client, case):
    response = client.get("/tasks", headers=BAD_AUTHORIZATION[case](app))
    assert_unauthorized(response)
    assert response.headers["Cache-Control"] == "no-store"


def test_foreign_pyjwt_token_with_only_standard_claims_is_accepted(client):
    token = pyjwt.encode(
        {"sub": "billing-service", "role": "agent", "iat": _now(), "exp": _now() + 60},
        JWT_SECRET,
        algorithm="HS256",
    )
    created = client.post("/tasks", json={"type": "faq", "priority": "P3"}, headers=bearer(token))
    assert created.status_code == 201
    assert created.json["task"]["created_by"] == "billing-service"


@pytest.mark.parametrize("kind", ["key", "jwt"])
def test_one_credential_alone_is_enough(client, kind):
    headers = credentials(kind, "agent")
    assert ("X-API-Key" in headers) != ("Authorization" in headers)
    created = client.post("/tasks", json={"type": "faq", "priority": "P3"}, headers=headers)
    assert created.status_code == 201
    assert created.json["task"]["created_by"] == ("apikey:agent" if kind == "key" else "jwt-agent")
    listed = client.get("/tasks", headers=headers)
    assert listed.status_code == 200 and listed.json["count"] == 1


def test_authenticated_responses_are_not_sniffed_or_cached(client, keys):
    for response in (
        client.get("/tasks", headers=keys["user"]),
        client.post("/tasks", json={"type": "faq"}, headers=keys["agent"]),
        client.get("/tasks", headers={"X-API-Key": "wrong-key-0123456789"}),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"


# --- secret rotation ---------------------------------------------------------------------

NEW_SECRET, OLD_SECRET = "new-secret-" + "n" * 40, "old-secret-" + "o" * 40


def test_rotation_accepts_the_previous_secret_and_signs_with_the_current(make_app):
    client = make_app(
        ORCHESTRATOR_JWT_SECRET=NEW_SECRET, ORCHESTRATOR_JWT_SECRET_PREVIOUS=OLD_SECRET
    ).test_client()
    for secret in (NEW_SECRET, OLD_SECRET):
        response = client.get("/tasks", headers=bearer(mint_token("a", "user", secret=secret)))
        assert response.status_code == 200, response.json
    for token in (
        mint_token("a", "user", secret="third-secret-" + "t" * 40),
        mint_token("a", "user", secret=OLD_SECRET, expires_in=-30),
    ):
        assert_unauthorized(client.get("/tasks", headers=bearer(token)))

    issued = client.post("/auth/token", headers={"X-API-Key": API_KEYS["agent"]})
    assert issued.status_code == 200
    token = issued.json["access_token"]
    claims = pyjwt.decode(token, NEW_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"]) == ("apikey:agent", "agent")
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(token, OLD_SECRET, algorithms=["HS256"])


def test_previous_secret_is_not_accepted_once_rotation_ends(make_app):
    client = make_app(ORCHESTRATOR_JWT_SECRET=NEW_SECRET).test_client()
    response = client.get("/tasks", headers=bearer(mint_token("a", "user", secret=OLD_SECRET)))
    assert_unauthorized(response, "Invalid token")


# --- API key formats ---------------------------------------------------------------------

PLAIN, AS_USER, AS_ADMIN, NAMED = (
    "plain-key-" + "p" * 16,
    "user-key2-" + "u" * 16,
    "admin-key2-" + "a" * 16,
    "named-key-" + "c" * 16,
)


def _key_id(key: str) -> str:
    return "apikey:" + hashlib.sha256(key.encode()).hexdigest()[:12]


@pytest.mark.parametrize(
    ("key", "role", "principal"),
    [
        (PLAIN, "agent", _key_id(PLAIN)),
        (AS_USER, "user", _key_id(AS_USER)),
        (AS_ADMIN, "admin", _key_id(AS_ADMIN)),
        (NAMED, "user", "apikey:ci_bot"),
    ],
)
def test_key_formats_give_role_and_principal(make_app, key, role, principal):
    client = make_app(
        ORCHESTRATOR_API_KEYS=f"{PLAIN}, {AS_USER}:user,{AS_ADMIN}:admin",
        ORCHESTRATOR_API_KEY_CI_BOT=f"{NAMED}:user",
    ).test_client()
    response = client.post("/auth/token", headers={"X-API-Key": key})
    assert response.status_code == 200
    assert (response.json["sub"], response.json["role"]) == (principal, role)
    assert key not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORCHESTRATOR_API_KEYS", "short:agent"),
        ("ORCHESTRATOR_API_KEYS", f"{PLAIN}:root"),
        ("ORCHESTRATOR_API_KEY_CI", PLAIN),  # a named key must say its role
        ("ORCHESTRATOR_API_KEY_CI", f"{PLAIN}:superuser"),
        ("ORCHESTRATOR_API_KEY_CI", f"has space {PLAIN}:user"),
        ("ORCHESTRATOR_API_KEY_C-I", f"{PLAIN}:user"),
    ],
)
def test_bad_key_configuration_names_the_variable_but_not_the_key(redis_server, variable, value):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(base_env(redis_server.url, **{variable: value}))
    assert raised.value.variable == variable
    assert PLAIN not in str(raised.value)


def test_keys_are_looked_up_by_digest_not_compared_as_secrets(app):
    from app.auth import API_KEYS as REGISTRY

    registry = app.extensions[REGISTRY]
    # Only SHA-256 digests are held and compared: a lookup's timing says nothing about
    # how much of a presented key matches a configured one.
    assert all(len(digest) == 32 for digest in registry._principals)
    assert not {key.encode() for key in API_KEYS.values()} & set(registry._principals)
    for key in API_KEYS.values():
        assert registry.match(key) is not None
        assert registry.match(key[:-1]) is None
        assert registry.match(key + "x") is None


# --- POST /auth/token --------------------------------------------------------------------

TOKEN_CASES = [
    # (kind, role, body, status, expected sub, expected role)
    ("key", "agent", None, 200, "apikey:agent", "agent"),
    ("key", "agent", {"role": "user"}, 200, "apikey:agent", "user"),
    ("key", "agent", {"sub": "apikey:agent"}, 200, "apikey:agent", "agent"),
    ("key", "user", None, 200, "apikey:user", "user"),
    ("key", "admin", {"sub": "robot", "role": "agent"}, 200, "robot", "agent"),
    ("key", "admin", {"role": "admin"}, 200, "apikey:admin", "admin"),
    ("jwt", "admin", {"sub": "robot", "role": "user"}, 200, "robot", "user"),
    ("key", "agent", {"role": "admin"}, 403, None, None),
    ("key", "user", {"role": "agent"}, 403, None, None),
    ("key", "agent", {"sub": "someone-else"}, 403, None, None),
    ("key", "user", {"sub": "someone-else", "role": "user"}, 403, None, None),
    ("jwt", "agent", None, 403, None, None),
    ("jwt", "user", None, 403, None, None),
    ("key", "agent", {"role": "root"}, 422, None, None),
    ("key", "agent", {"scope": "all"}, 422, None, None),
]


@pytest.mark.parametrize(("kind", "role", "body", "status", "sub", "granted"), TOKEN_CASES)
def test_token_issuance_rules(api, kind, role, body, status, sub, granted):
    response = api.post("/auth/token", json=body, headers=credentials(kind, role))
    assert response.status_code == status, response.json
    if status != 200:
        assert "access_token" not in response.json and response.json["detail"]
        return
    assert response.json.keys() == {"access_token", "token_type", "expires_in", "role", "sub"}
    assert response.json["token_type"] == "bearer" and response.json["expires_in"] == 3600
    assert (response.json["sub"], response.json["role"]) == (sub, granted)
    claims = pyjwt.decode(response.json["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"], claims["type"]) == (sub, granted, "access")
    assert claims["exp"] - claims["iat"] == 3600
    # The token works, and carries exactly the granted role.
    headers = bearer(response.json["access_token"])
    assert api.get("/tasks", headers=headers).status_code == 200
    create = api.post("/tasks", json={"type": "faq", "priority": "P3"}, headers=headers)
    assert create.status_code == (403 if granted == "user" else 201)


def test_token_issuance_needs_credentials(api):
    assert_unauthorized(api.post("/auth/token", json={"role": "user"}), "Not authenticated")


def test_a_token_minted_with_a_token_ends_when_its_minter_does(make_app):
    """An admin token could renew itself for ever: each token it minted had the full
    lifetime. A token's token now expires with it; a key's token keeps the full one."""
    client = make_app(ORCHESTRATOR_JWT_EXPIRES="100").test_client()
    first = client.post("/auth/token", headers={"X-API-Key": API_KEYS["admin"]}).json
    assert first["expires_in"] == 100
    first_exp = pyjwt.decode(first["access_token"], JWT_SECRET, algorithms=["HS256"])["exp"]
    time.sleep(2.1)
    renewed = client.post("/auth/token", headers=bearer(first["access_token"]))
    assert renewed.status_code == 200 and renewed.json["expires_in"] <= 98
    claims = pyjwt.decode(renewed.json["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["exp"] <= first_exp


def test_a_token_minted_by_a_scoped_key_keeps_its_scope(make_app):
    """A token is never worth more than its minter: a key scoped to dev_agent mints a
    token that still claims and reports only for dev_agent (it once lost the scope)."""
    scoped_key = "scoped-key-0123456789abcdef"
    client = make_app(ORCHESTRATOR_API_KEY_DEVBOT=f"{scoped_key}:agent:dev_agent").test_client()
    agent = {"X-API-Key": API_KEYS["agent"]}
    ops_task = client.post("/tasks", json={"type": "monitor", "priority": "P3"}, headers=agent)
    issued = client.post("/auth/token", headers={"X-API-Key": scoped_key})
    assert issued.status_code == 200
    token = bearer(issued.json["access_token"])
    refused = client.post("/tasks/claim", json={"agent": "ops_agent"}, headers=token)
    assert refused.status_code == 403 and "dev_agent" in refused.json["detail"]
    task_id = ops_task.json["task_id"]
    cancel = client.post(f"/tasks/{task_id}/cancel", json={}, headers=token)
    assert cancel.status_code == 403
    # Its own agent's work it still does (nothing is queued for dev_agent: 204).
    own = client.post("/tasks/claim", json={"agent": "dev_agent"}, headers=token)
    assert own.status_code == 204
    claims = pyjwt.decode(issued.json["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["agents"] == ["dev_agent"]
    unscoped = client.post("/auth/token", headers=agent).json["access_token"]
    assert "agents" not in pyjwt.decode(unscoped, JWT_SECRET, algorithms=["HS256"])
    forged = mint_token("apikey:devbot", "agent", agents="dev_agent")
    assert client.get("/tasks", headers=bearer(forged)).status_code == 401


# --- flask CLI ---------------------------------------------------------------------------


def test_cli_token_is_accepted_by_the_api(runner, client):
    result = runner.invoke(args=["token", "--sub", "deploy-bot", "--role", "user"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    claims = pyjwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"]) == ("deploy-bot", "user")
    assert client.get("/tasks", headers=bearer(token)).status_code == 200
    assert client.post("/tasks", json={"type": "faq"}, headers=bearer(token)).status_code == 403


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--sub", "x", "--role", "root"], "'root' is not one of"),
        (["--sub", "", "--role", "user"], "1-200 characters"),
        (["--sub", "x" * 201], "1-200 characters"),
    ],
)
def test_cli_token_refuses_what_the_api_would_reject(runner, args, complaint):
    result = runner.invoke(args=["token", *args])
    assert result.exit_code == 2 and complaint in result.output


def test_cli_gen_secret_is_a_usable_production_secret(runner, redis_server, make_app):
    secrets = {runner.invoke(args=["gen-secret"]).output.strip() for _ in range(2)}
    assert len(secrets) == 2
    secret = secrets.pop()
    assert len(secret) >= 32 and secret.isascii() and not any(c.isspace() for c in secret)
    settings = Settings.from_env(
        {
            "ENVIRONMENT": "production",
            "REDIS_URL": redis_server.url,
            "ORCHESTRATOR_JWT_SECRET": secret,
        }
    )
    assert settings.jwt_secret == secret
    client = make_app(ORCHESTRATOR_JWT_SECRET=secret).test_client()
    assert (
        client.get("/tasks", headers=bearer(mint_token("a", "user", secret=secret))).status_code
        == 200
    )


def test_cli_gen_api_key_prints_a_working_variable(runner, make_app):
    result = runner.invoke(args=["gen-api-key", "--name", "ci_bot", "--role", "user"])
    assert result.exit_code == 0
    variable, _, value = result.output.strip().partition("=")
    assert variable == "ORCHESTRATOR_API_KEY_CI_BOT"
    key, _, role = value.rpartition(":")
    assert role == "user" and len(key) >= 32
    client = make_app(**{variable: value}).test_client()
    response = client.post("/auth/token", headers={"X-API-Key": key})
    assert response.status_code == 200
    assert (response.json["sub"], response.json["role"]) == ("apikey:ci_bot", "user")


def test_cli_gen_api_key_refuses_a_name_the_config_would_reject(runner):
    result = runner.invoke(args=["gen-api-key", "--name", "ci-bot"])
    assert result.exit_code == 2 and "--name" in result.output


# --- CORS --------------------------------------------------------------------------------

CORS_ORIGINS = "https://console.acme.io,https://*.example.com"
ORIGINS = [
    ("https://console.acme.io", True),
    ("https://a.example.com", True),
    ("https://a-1.example.com", True),
    ("https://a.b.example.com", False),
    ("https://example.com", False),
    ("https://.example.com", False),
    ("https://example.com.evil.com", False),
    ("https://a.example.com.evil.com", False),
    ("https://evilexample.com", False),
    ("http://a.example.com", False),
    ("https://a.example.com:8443", False),
    ("https://console.acme.io.evil.com", False),
    ("http://console.acme.io", False),
    ("null", False),
]


@pytest.fixture(scope="module")
def cors_api(redis_server):
    return create_app(
        base_env(redis_server.url, ORCHESTRATOR_CORS_ORIGINS=CORS_ORIGINS)
    ).test_client()


def cors_headers(response) -> dict:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def header_set(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


def assert_cors_for(response, origin: str, allowed: bool) -> None:
    """A 200 that echoes `origin` with credentials when it is allowed, and no CORS header
    at all when it is not."""
    assert response.status_code == 200
    if not allowed:
        assert cors_headers(response) == {}
        return
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.parametrize(("origin", "allowed"), ORIGINS)
def test_cors_echoes_only_configured_origins(cors_api, origin, allowed):
    response = cors_api.get("/tasks", headers={"Origin": origin, "X-API-Key": API_KEYS["user"]})
    assert_cors_for(response, origin, allowed)
    if not allowed:
        return
    assert "origin" in header_set(response.headers["Vary"])
    assert header_set(response.headers["Access-Control-Expose-Headers"]) >= {
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-request-id",
        "retry-after",
    }


def test_no_origin_listed_means_no_cross_origin_access(client):
    """The default: not one CORS header, for a request or a preflight from any origin."""
    origin = {"Origin": "https://console.acme.io"}
    response = client.get("/tasks", headers={**origin, "X-API-Key": API_KEYS["user"]})
    assert response.status_code == 200 and cors_headers(response) == {}
    preflight = client.options(
        "/tasks", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200 and cors_headers(preflight) == {}
    assert "origin" not in header_set(preflight.headers.get("Vary", ""))


PREFLIGHT_HEADERS = "Authorization, X-API-Key, Idempotency-Key, X-Request-ID, Content-Type"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://console.acme.io", True),
        ("https://a.example.com", True),
        ("https://a.b.example.com", False),
        ("https://evil.com", False),
    ],
)
def test_cors_preflight(cors_api, origin, allowed):
    response = cors_api.options(
        "/tasks",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": PREFLIGHT_HEADERS,
        },
    )
    assert_cors_for(response, origin, allowed)
    if not allowed:
        return
    assert header_set(response.headers["Access-Control-Allow-Headers"]) >= {
        "authorization",
        "x-api-key",
        "idempotency-key",
        "x-request-id",
    }
    assert {"POST", "PATCH", "GET"} <= set(
        response.headers["Access-Control-Allow-Methods"].replace(" ", "").split(",")
    )


def test_cors_star_is_public_without_credentials(make_app, keys):
    client = make_app(ORCHESTRATOR_CORS_ORIGINS="*").test_client()
    response = client.get("/tasks", headers={"Origin": "https://anyone.test", **keys["user"]})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_origin_patterns_do_not_match_a_trailing_newline():
    from app.hygiene import origin_pattern

    for configured, origin in (
        ("https://console.acme.io", "https://console.acme.io"),
        ("https://*.example.com", "https://a.example.com"),
    ):
        assert origin_pattern(configured).match(origin)
        assert not origin_pattern(configured).match(origin + "\n")


def test_no_cors_headers_by_default(client, keys):
    for response in (
        client.get("/tasks", headers={"Origin": "https://a.example.com", **keys["user"]}),
        client.options(
            "/tasks",
            headers={"Origin": "https://a.example.com", "Access-Control-Request-Method": "POST"},
        ),
    ):
        assert cors_headers(response) == {}


# --- bodies, client addresses -----------------------------------------------------------


def test_bodies_over_the_limit_are_413_json(make_app, keys):
    client = make_app(ORCHESTRATOR_MAX_BODY_BYTES="1024").test_client()
    small = {"type": "faq", "priority": "P3", "payload": {"text": "x" * 900}}
    large = {"type": "faq", "priority": "P3", "payload": {"text": "x" * 1100}}
    assert client.post("/tasks", json=small, headers=keys["agent"]).status_code == 201
    for headers in (keys["agent"], {}):
        response = client.post("/tasks", json=large, headers=headers)
        assert response.status_code == 413
        assert response.json == {"detail": "Request body is larger than 1024 bytes"}
    assert client.get("/tasks", headers=keys["user"]).json["count"] == 1


@pytest.mark.parametrize(
    ("trusted", "forwarded", "limited"),
    [
        # No trusted hop: whatever X-Forwarded-For says, the peer (127.0.0.1) is the client.
        ("0", lambda i: f"203.0.113.{i}", True),
        # One trusted hop: only the entry the proxy appended (the last) names the client.
        ("1", lambda i: f"203.0.113.{i}, 10.0.0.1", True),
        ("1", lambda i: f"10.0.0.{i + 1}", False),
    ],
)
def test_spoofed_forwarded_for_cannot_dodge_the_limit(make_app, trusted, forwarded, limited):
    client = make_app(
        ORCHESTRATOR_TRUSTED_PROXIES=trusted, ORCHESTRATOR_RATE_LIMIT_STATS="2"
    ).test_client()
    statuses = [
        client.get("/stats", headers={"X-Forwarded-For": forwarded(i)}).status_code
        for i in range(3)
    ]
    assert statuses == ([200, 200, 429] if limited else [200, 200, 200])


@pytest.mark.parametrize(
    ("trusted", "forwarded"), [("0", "10.1.2.3"), ("1", "10.1.2.3, 198.51.100.7")]
)
def test_spoofed_forwarded_for_cannot_claim_an_exempt_network(make_app, trusted, forwarded):
    client = make_app(
        ORCHESTRATOR_TRUSTED_PROXIES=trusted,
        ORCHESTRATOR_RATE_LIMIT_STATS="1",
        ORCHESTRATOR_RATE_LIMIT_EXEMPT="10.0.0.0/8",
    ).test_client()
    statuses = [
        client.get("/stats", headers={"X-Forwarded-For": forwarded}).status_code for _ in range(2)
    ]
    assert statuses == [200, 429]


# --- secrets never leak ------------------------------------------------------------------

SECRETS = (JWT_SECRET, *API_KEYS.values())


def requests_carrying_secrets(send) -> list:
    """Good and bad calls that carry keys and tokens; returns what each answered."""
    near_miss = API_KEYS["admin"][:-1] + "?"
    return [
        send("GET", "/tasks", {"X-API-Key": API_KEYS["user"]}),
        send("GET", "/tasks", {"X-API-Key": near_miss}),
        send("POST", "/tasks", {"X-API-Key": API_KEYS["user"]}, {"type": "faq"}),
        send("POST", "/tasks", {"X-API-Key": API_KEYS["agent"]}, {"type": "nope"}),
        send(
            "POST",
            "/tasks",
            {"X-API-Key": API_KEYS["agent"], "Content-Type": "application/json"},
            b"{not json",
        ),
        send("GET", f"/tasks/{MISSING_TASK}", {"X-API-Key": API_KEYS["ops"]}),
        send("GET", "/tasks", bearer(mint_token("x", "user", secret="wrong" * 10))),
        send(
            "GET",
            "/tasks",
            {
                "Authorization": "Basic "
                + base64.b64encode(f"{API_KEYS['admin']}:{JWT_SECRET}".encode()).decode()
            },
        ),
        send("GET", "/tasks", {"Authorization": f"Bearer {API_KEYS['admin']}"}),
        send("POST", "/auth/token", {"X-API-Key": API_KEYS["agent"]}, {"role": "admin"}),
        send("POST", "/auth/token", {"X-API-Key": API_KEYS["admin"]}, {"sub": "robot"}),
        send("GET", "/stats", {"X-API-Key": near_miss}),
    ]


def assert_no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert API_KEYS["admin"][:-1] not in text  # not even the near miss


def test_no_secret_in_bodies_or_logs(app, client, caplog):
    def explode():
        raise RuntimeError("boom while holding credentials")

    app.add_url_rule("/_boom", "boom", explode)
    # gunicorn's access line is made of what the app leaves in the WSGI environ: keep it.
    environs, serve = [], app.wsgi_app

    def keep_environ(environ, start_response):
        environs.append(environ)
        return serve(environ, start_response)

    app.wsgi_app = keep_environ

    def send(method, path, headers, body=None):
        if isinstance(body, bytes):
            return client.open(path, method=method, headers=headers, data=body)
        return client.open(path, method=method, headers=headers, json=body)

    with caplog.at_level(logging.DEBUG):
        responses = requests_carrying_secrets(send)
        # In process only the app's own records are written (gunicorn writes the access
        # line, see the live test below): an unexpected error logs its traceback.
        responses.append(send("GET", "/_boom", {"X-API-Key": API_KEYS["admin"]}))
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 401, 403, 422, 400, 404, 401, 401, 401, 403, 200, 200, 500]
    access = [{k: v for k, v in e.items() if k.startswith("orchestrator.")} for e in environs]
    assert access[0]["orchestrator.principal"] == "apikey:user"
    assert access[1]["orchestrator.principal"] == "-"  # the near miss named nobody
    for response, line in zip(responses, access, strict=True):
        assert_no_secret_in(response.get_data(as_text=True))
        assert_no_secret_in(str(response.headers))
        assert_no_secret_in(str(line))
    assert "unhandled error" in caplog.text and "boom while holding credentials" in caplog.text
    assert_no_secret_in(caplog.text)
    assert_no_secret_in(" ".join(str(r.__dict__) for r in caplog.records))


@pytest.fixture(scope="module")
def live(module_live_server):
    """One real gunicorn for the tests that need the wire (chunked bodies, its own logs)."""
    return module_live_server(workers=1, ORCHESTRATOR_MAX_BODY_BYTES="1024", LOG_LEVEL="DEBUG")


def test_no_secret_in_the_live_server_log(live):
    def send(method, path, headers, body=None):
        kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
        return requests.request(method, live.url + path, headers=headers, timeout=5, **kwargs)

    responses = requests_carrying_secrets(send)
    assert [r.status_code for r in responses] == [
        200,
        401,
        403,
        422,
        400,
        404,
        401,
        401,
        401,
        403,
        200,
        200,
    ]
    for response in responses:
        assert_no_secret_in(response.text)
    logs = live.logs()
    assert "/auth/token" in logs  # the access log did record the requests
    assert_no_secret_in(logs)


def test_a_decision_link_token_never_reaches_the_access_log(live):
    """A link's token is its credential: the access line names the route, not the token."""
    token = "eyJhIjoiYXByLXgiLCJwIjoiYXBpa2V5Om9wcyIsImQiOiJhcHByb3ZlIn0.S1gnatureOfTheLink"
    response = requests.get(f"{live.url}/decisions/{token}", timeout=5)
    assert response.status_code == 400  # not signed by this deployment
    logs = live.logs()
    assert "/decisions/" in logs and token not in logs and "S1gnatureOfTheLink" not in logs


def test_live_chunked_body_over_the_limit_is_413(live):
    def chunks():
        for _ in range(8):
            yield b'{"pad": "' + b"x" * 200 + b'", '

    response = requests.post(
        f"{live.url}/tasks",
        data=chunks(),
        timeout=5,
        headers={"Content-Type": "application/json", "X-API-Key": API_KEYS["agent"]},
    )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body is larger than 1024 bytes"}
