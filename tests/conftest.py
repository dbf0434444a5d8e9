"""Shared fixtures: a private Redis, app factories, clients, credentials, the `api` helper
and live servers."""

from __future__ import annotations

import time
import uuid

import jwt as pyjwt
import pytest

from app import create_app
from harness import LiveServer, RedisServer
from tests.helpers import Api

JWT_SECRET = "test-secret-" + "s" * 40
API_KEYS = {
    "admin": "admin-key-0123456789abcdef",
    "agent": "agent-key-0123456789abcdef",
    "user": "user-key-0123456789abcdef",
    "ops": "ops-key-0123456789abcdef",
}
# X-API-Key headers per name; `ops` is a second agent principal (for four eyes).
HEADERS = {name: {"X-API-Key": key} for name, key in API_KEYS.items()}
PRINCIPALS = {
    "admin": "apikey:admin",
    "agent": "apikey:agent",
    "user": "apikey:user",
    "ops": "apikey:ops",
}


def base_env(redis_url: str, **overrides: str) -> dict[str, str]:
    """Everything a test app needs, with its own key prefix so tests never collide."""
    env = {
        "ENVIRONMENT": "testing",
        "REDIS_URL": redis_url,
        "ORCHESTRATOR_JWT_SECRET": JWT_SECRET,
        "ORCHESTRATOR_API_KEYS": "",
        "ORCHESTRATOR_API_KEY_ADMIN": f"{API_KEYS['admin']}:admin",
        "ORCHESTRATOR_API_KEY_AGENT": f"{API_KEYS['agent']}:agent",
        "ORCHESTRATOR_API_KEY_USER": f"{API_KEYS['user']}:user",
        "ORCHESTRATOR_API_KEY_OPS": f"{API_KEYS['ops']}:agent",
        "ORCHESTRATOR_QUEUE_PREFIX": f"t{uuid.uuid4().hex[:12]}",
        "ORCHESTRATOR_RATE_LIMIT_TASKS": "100000",
        "ORCHESTRATOR_RATE_LIMIT_READS": "100000",
        "ORCHESTRATOR_RATE_LIMIT_AGENT_OPS": "100000",
        "ORCHESTRATOR_RATE_LIMIT_EVENTS": "100000",
        "ORCHESTRATOR_RATE_LIMIT_APPROVALS": "100000",
        "ORCHESTRATOR_RATE_LIMIT_STATS": "100000",
        "ORCHESTRATOR_RATE_LIMIT_DEFAULT": "100000",
        "ORCHESTRATOR_RATE_LIMIT_AUTH_FAILURES": "100000",
        "HEALTH_CHECK_TIMEOUT": "2",
        "LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the session; tests isolate themselves by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server for one test that may stop, freeze or restart it (append-only on)."""
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def make_app(redis_server):
    """Build an app on the session Redis with env overrides: make_app(ORCHESTRATOR_X="1")."""

    def factory(redis_url: str | None = None, **overrides: str):
        return create_app(base_env(redis_url or redis_server.url, **overrides))

    return factory


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def keys():
    """X-API-Key headers per role; `ops` is a second agent (for four-eyes)."""
    return {name: dict(headers) for name, headers in HEADERS.items()}


@pytest.fixture
def api(client, keys):
    """The API as a role: `api.create(as_="agent")`, `api.approve(approval_id, as_="ops")`."""
    return Api(client, keys)


def mint_token(
    sub: str, role: str, *, secret: str = JWT_SECRET, expires_in: int = 3600, **extra
) -> str:
    """A token as another service would mint it with PyJWT: only {sub, role, exp, iat}."""
    now = int(time.time())
    claims = {"sub": sub, "role": role, "iat": now, "exp": now + expires_in, **extra}
    return pyjwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def tokens():
    """Bearer headers per role, minted outside the service."""
    return {
        role: {"Authorization": f"Bearer {mint_token(f'jwt-{role}', role)}"}
        for role in ("admin", "agent", "user")
    }


class LiveServers:
    """Starts the real service under gunicorn, each with its own key prefix; stops them all."""

    def __init__(self, redis_url: str, directory):
        self.redis_url = redis_url
        self.directory = directory
        self.started: list[LiveServer] = []

    def __call__(self, workers: int = 2, redis_url: str | None = None, **overrides: str):
        """A started server: workers, a REDIS_URL other than the session's, env overrides."""
        env = base_env(redis_url or self.redis_url, **overrides)
        log = self.directory / f"gunicorn-{len(self.started)}.log"
        server = LiveServer(env, workers, log)
        self.started.append(server)
        return server.start()

    def stop(self) -> None:
        """Stop every server started here."""
        for server in self.started:
            server.stop()


@pytest.fixture
def live_server(redis_server, tmp_path):
    """Start the real service under gunicorn: live_server(workers=3, ORCHESTRATOR_X="1")."""
    servers = LiveServers(redis_server.url, tmp_path)
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def module_live_server(redis_server, tmp_path_factory):
    """live_server for servers a module's tests share; stopped after the module."""
    servers = LiveServers(redis_server.url, tmp_path_factory.mktemp("live"))
    yield servers
    servers.stop()
