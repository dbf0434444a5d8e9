"""Shared fixtures: a private Redis, app factories, clients, credentials and live servers."""

from __future__ import annotations

import time
import uuid

import jwt as pyjwt
import pytest

from app import create_app
from tests.support import LiveServer, RedisServer

JWT_SECRET = "test-secret-" + "s" * 40
API_KEYS = {
    "admin": "admin-key-0123456789abcdef",
    "agent": "agent-key-0123456789abcdef",
    "user": "user-key-0123456789abcdef",
    "ops": "ops-key-0123456789abcdef",
}
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
        "ORCHESTRATOR_RATE_LIMIT_EVENTS": "100000",
        "ORCHESTRATOR_RATE_LIMIT_APPROVALS": "100000",
        "ORCHESTRATOR_RATE_LIMIT_STATS": "100000",
        "ORCHESTRATOR_RATE_LIMIT_DEFAULT": "100000",
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
    return {name: {"X-API-Key": key} for name, key in API_KEYS.items()}


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


@pytest.fixture
def live_server(redis_server, tmp_path):
    """Start the real service under gunicorn: live_server(workers=3, ORCHESTRATOR_X="1")."""
    started: list[LiveServer] = []

    def factory(workers: int = 2, redis_url: str | None = None, **overrides: str) -> LiveServer:
        env = base_env(redis_url or redis_server.url, **overrides)
        server = LiveServer(env, workers, tmp_path / f"gunicorn-{len(started)}.log").start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
