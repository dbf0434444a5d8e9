"""`make run` as a newcomer meets it: in a fresh checkout, side by side, with bad input."""

from __future__ import annotations

import re
import subprocess

import pytest
import redis
import requests

from harness import MakeRun, free_port, fresh_checkout, process_alive

pytestmark = pytest.mark.slow


@pytest.fixture
def checkout(tmp_path):
    return fresh_checkout(tmp_path / "repo")


@pytest.fixture
def make_run(checkout):
    """Start scripts/run.sh in the checkout: make_run(PORT=..., REDIS_PORT=...)."""
    runs: list[MakeRun] = []

    def start(**variables: str) -> MakeRun:
        variables.setdefault("REDIS_PORT", str(free_port()))
        run = MakeRun(checkout, **variables)
        runs.append(run)
        return run.start()

    yield start
    for run in runs:
        run.kill_leftovers()


def health(run: MakeRun) -> int:
    return requests.get(f"{run.url}/health", timeout=5).status_code


def redis_answers(port: int) -> bool:
    try:
        return redis.Redis(port=port, socket_timeout=1).ping()
    except redis.RedisError:
        return False


def test_two_runs_side_by_side_each_own_and_stop_only_what_they_started(make_run):
    first = make_run()
    first.wait_for("==> ready")
    first_redis = int(first.env["REDIS_PORT"])
    assert f"redis://127.0.0.1:{first_redis}/0" in first.output  # the chosen Redis port
    # The banner says how to point the flask CLI at this run's Redis; that command works.
    cli = f"REDIS_URL=redis://127.0.0.1:{first_redis}/0 .venv/bin/flask --app wsgi sweep"
    assert cli in first.output
    swept = subprocess.run(
        ["bash", "-c", cli], cwd=first.checkout, env=first.env, capture_output=True, text=True
    )
    assert f"swept Redis at 127.0.0.1:{first_redis}" in swept.stdout, swept.stderr

    # Same port: refused before anything is started, and the first run is untouched.
    clash = make_run(PORT=str(first.port))
    assert clash.finish() != 0
    assert "already in use" in clash.output
    assert "Stopping redis-server" not in clash.output
    assert health(first) == 200 and redis_answers(first_redis)

    # Another port: a second service with its own Redis, both healthy.
    second = make_run()
    second.wait_for("==> ready")
    second_redis = int(second.env["REDIS_PORT"])
    assert second_redis != first_redis and redis_answers(second_redis)
    assert health(first) == 200 and health(second) == 200

    # Ctrl-C on the second stops its own gunicorn and Redis, nothing of the first.
    assert second.stop() == 130
    assert not redis_answers(second_redis)
    assert not process_alive(second.redis_pid())
    assert health(first) == 200 and redis_answers(first_redis)

    first.stop()
    assert not redis_answers(first_redis)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{first.url}/health", timeout=2)


def test_ready_is_said_only_when_health_is_200(make_run):
    closed = free_port()  # nothing listens there
    run = make_run(REDIS_URL=f"redis://127.0.0.1:{closed}/0")
    output = run.wait_for("NOT ready")
    assert "==> ready" not in output
    assert "503" in output and f"127.0.0.1:{closed}" in output
    assert health(run) == 503  # still serving, and /health says what is wrong


def test_a_bad_port_is_one_line_without_a_traceback(make_run):
    run = make_run(PORT="abc")
    assert run.finish() != 0
    output = run.output
    assert "PORT must be a TCP port number (1-65535), got 'abc'" in output
    assert "Traceback" not in output
    assert "http://" not in output  # no banner for a service that will not start
    assert not re.search(r"pid \d+", output)  # nothing was started


def test_an_existing_env_file_is_never_rewritten(make_run, checkout):
    env_file = checkout / ".env"
    env_file.write_text("ENVIRONMENT=development\nORCHESTRATOR_JWT_SECRET=" + "k" * 40 + "\n")
    before = env_file.read_bytes()

    # An empty secret exported in the shell does not blank the file's, nor rotate it.
    run = make_run(ORCHESTRATOR_JWT_SECRET="")
    run.wait_for("==> ready")
    run.stop()
    assert env_file.read_bytes() == before
    assert "no API key is configured" in run.output  # said, with the command that fixes it

    env_file.write_text("ENVIRONMENT=development\n")
    before = env_file.read_bytes()
    run = make_run()
    assert run.finish() != 0
    assert "ORCHESTRATOR_JWT_SECRET is empty" in run.output and "gen-secret" in run.output
    assert env_file.read_bytes() == before


def walkthrough_script(readme: str) -> str:
    """The README's curl walk-through: the bash block after its heading."""
    section = readme.split("## A walk through with curl", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_the_readme_walkthrough_runs_twice_against_make_run(make_run, checkout):
    run = make_run()
    run.wait_for("==> ready")
    script = walkthrough_script((checkout / "README.md").read_text())
    for attempt in (1, 2):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=checkout,
            env={**run.env, "API": run.url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"run {attempt}:\n{done.stdout}\n{done.stderr}"
        out = done.stdout
        assert '"status":"completed"' in out  # claimed, heartbeat, completed
        assert "-> 403" in out and "-> 200" in out  # four eyes, then the approval
        assert '"access_token"' not in out  # the token went into a variable, not the log


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://:p4ssw0rd@127.0.0.1:1/mymaster?sentinel_password=s3nt1nel",
        "redis://127.0.0.1:1/0?password=p4ssw0rd",
        "redis://:p4ssw0rd@s3nt1nel@127.0.0.1:1/0",  # an unencoded @ in the password
    ],
)
def test_the_banner_never_shows_a_redis_password(make_run, url):
    # A bad value makes gunicorn stop right after the banner.
    run = make_run(REDIS_URL=url, ORCHESTRATOR_RATE_LIMIT_TASKS="ten")
    assert run.finish() != 0
    assert "REDIS_URL from .env or the environment: " in run.output
    assert "127.0.0.1:1" in run.output
    assert "p4ssw0rd" not in run.output and "s3nt1nel" not in run.output
