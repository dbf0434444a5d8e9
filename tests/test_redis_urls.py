"""REDIS_URL schemes: unix:// sockets and rediss:// with certificate verification."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support import free_port, wait_until


def _create_and_read(client, keys) -> None:
    created = client.post("/tasks", json={"type": "faq"}, headers=keys["agent"])
    assert created.status_code == 201
    task_id = created.json["task_id"]
    read = client.get(f"/tasks/{task_id}", headers=keys["user"])
    assert read.status_code == 200 and read.json["task"]["status"] == "assigned"
    assert client.get("/health").json["redis"] == "connected"


def _redis_server(tmp_path, *options: str) -> subprocess.Popen:
    """A redis-server with no TCP port of its own, no persistence, in tmp_path."""
    return subprocess.Popen(
        ["redis-server", "--port", "0", "--save", "", "--dir", str(tmp_path), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def unix_redis(tmp_path):
    socket_path = tmp_path / "redis.sock"
    process = _redis_server(tmp_path, "--unixsocket", str(socket_path))
    wait_until(socket_path.exists, timeout=10)
    yield f"unix://{socket_path}"
    process.kill()
    process.wait()


def test_unix_socket_url(make_app, keys, unix_redis):
    app = make_app(redis_url=unix_redis, ORCHESTRATOR_RATE_LIMIT_TASKS="100")
    client = app.test_client()
    _create_and_read(client, keys)
    limited = client.get("/tasks", headers=keys["user"])  # the limiter uses the socket too
    assert limited.headers["X-RateLimit-Limit"] == "100"


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server speaking TLS only, with a self-signed certificate."""
    assert shutil.which("openssl"), "openssl is needed to make a test certificate"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = _redis_server(
        tmp_path,
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-auth-clients",
        "no",
    )

    def answers():
        import redis

        try:
            return redis.Redis(port=port, ssl=True, ssl_cert_reqs="none").ping()
        except redis.RedisError:
            return False

    wait_until(answers, timeout=10)
    yield f"rediss://127.0.0.1:{port}/0"
    process.kill()
    process.wait()


def test_rediss_verifies_certificates_by_default(make_app, tls_redis):
    client = make_app(redis_url=tls_redis).test_client()
    response = client.get("/health")
    assert response.status_code == 503  # a self-signed certificate is not trusted
    assert response.json["redis"] == "disconnected"


def test_rediss_without_verification_when_asked(make_app, keys, tls_redis):
    client = make_app(redis_url=tls_redis, REDIS_TLS_VERIFY="false").test_client()
    _create_and_read(client, keys)
