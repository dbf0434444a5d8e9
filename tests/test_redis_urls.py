"""REDIS_URL schemes: unix:// sockets and rediss:// with certificate verification."""

from __future__ import annotations

import pytest

from harness import RedisServer


def _create_and_read(api) -> None:
    task_id = api.create(type="faq")["task_id"]
    assert api.task(task_id)["status"] == "assigned"
    assert api.health()["redis"] == "connected"


@pytest.fixture
def unix_redis(tmp_path):
    with RedisServer(tmp_path / "redis", transport="unix") as server:
        yield server.url


def test_unix_socket_url(make_app, keys, api, unix_redis):
    app = make_app(redis_url=unix_redis, ORCHESTRATOR_RATE_LIMIT_READS="100")
    client = app.test_client()
    _create_and_read(api.using(client))
    limited = client.get("/tasks", headers=keys["user"])  # the limiter uses the socket too
    assert limited.headers["X-RateLimit-Limit"] == "100"


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server speaking TLS only, with a self-signed certificate."""
    with RedisServer(tmp_path / "redis", transport="tls") as server:
        yield server.url


def test_rediss_verifies_certificates_by_default(make_app, tls_redis):
    client = make_app(redis_url=tls_redis).test_client()
    response = client.get("/health")
    assert response.status_code == 503  # a self-signed certificate is not trusted
    assert response.json["redis"] == "disconnected"


def test_rediss_without_verification_when_asked(make_app, api, tls_redis):
    _create_and_read(
        api.using(make_app(redis_url=tls_redis, REDIS_TLS_VERIFY="false").test_client())
    )
