"""What the Dockerfile and render.yaml promise: a non-root image, and health checks on /health."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from harness import ROOT, free_port


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
