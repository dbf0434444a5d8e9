"""What the Dockerfile, render.yaml and README promise: a non-root image, health checks on
/health, and a buffering proxy in front of the sync workers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from app.config import Settings
from harness import ROOT, free_port, wait_until
from harness.buffering_proxy import BufferingProxy


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments left out."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    instructions = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(arguments.split())))
    return instructions


def healthcheck_command() -> str:
    """The shell command of the Dockerfile's HEALTHCHECK (after its options and CMD)."""
    checks = [args for keyword, args in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, checks
    options, found, command = checks[0].partition(" CMD ")
    assert found and "NONE" not in options.upper(), checks[0]
    return command


def test_the_image_runs_as_an_unprivileged_user():
    instructions = dockerfile_instructions()
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "no USER: the service would run as root"
    user = users[-1].split(":")[0]  # the one in force when CMD runs
    assert user not in ("root", "0")
    last = {keyword: position for position, (keyword, _) in enumerate(instructions)}
    assert last["USER"] < last["CMD"]


def test_the_image_health_check_probes_health(live_server):
    command = healthcheck_command()
    assert re.search(r"/health(?![\w/])", command), command
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def probe(port: int) -> int:
        return subprocess.run(
            ["sh", "-c", command], env={**env, "PORT": str(port)}, capture_output=True, timeout=20
        ).returncode

    assert probe(live_server(workers=1).port) == 0
    assert probe(free_port()) != 0  # nothing answers: the container is unhealthy


def test_render_checks_health_on_a_route_that_answers(client):
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    web = [service for service in blueprint["services"] if service["type"] == "web"]
    assert len(web) == 1
    assert web[0]["healthCheckPath"] == "/health"
    assert client.get(web[0]["healthCheckPath"]).status_code == 200


def open_slow_connections(port: int, count: int) -> list[socket.socket]:
    """Slowloris: connections that send half a request line's headers and then nothing."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        held.append(sock)
    return held


def health_answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=3).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.slow
def test_behind_a_buffering_proxy_slow_clients_do_not_block_health(live_server):
    server = live_server(workers=2)
    held = open_slow_connections(server.port, 4)
    try:
        time.sleep(0.5)  # the workers have accepted them and wait for the rest
        assert not health_answers(server.port)  # the threat the README describes
    finally:
        for sock in held:
            sock.close()
    assert wait_until(lambda: health_answers(server.port), timeout=10)
    proxy = BufferingProxy(server.port).start()
    held = open_slow_connections(proxy.port, 6)
    try:
        time.sleep(0.5)
        assert health_answers(proxy.port)  # the documented set-up holds
    finally:
        for sock in held:
            sock.close()
        proxy.stop()


def test_render_set_up_trusts_exactly_its_one_proxy():
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    web = next(service for service in blueprint["services"] if service["type"] == "web")
    declared = {var["key"]: var.get("value") for var in web["envVars"]}
    assert declared["ENVIRONMENT"] == "production"
    assert declared.get("ORCHESTRATOR_TRUSTED_PROXIES") in (None, "1")
    env = {
        "ENVIRONMENT": "production",
        "RENDER": "true",  # set by Render on every service
        "REDIS_URL": "rediss://kv.example:6379/0",
        "ORCHESTRATOR_JWT_SECRET": "s" * 40,
    }
    assert Settings.from_env(env).trusted_proxies == 1
    readme = (ROOT / "README.md").read_text()
    assert "buffering proxy" in readme and "proxy_request_buffering on" in readme
