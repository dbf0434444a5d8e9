"""The `flask --app wsgi` commands from a fresh clone, as a newcomer runs them."""

from __future__ import annotations

import subprocess

import pytest

from harness import clean_env, free_port, fresh_checkout

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return fresh_checkout(tmp_path_factory.mktemp("clone") / "repo")


def flask(checkout, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(checkout / ".venv/bin/flask"), "--app", "wsgi", *args],
        cwd=checkout,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_free_commands_run_before_there_is_any_configuration(checkout):
    assert not (checkout / ".env").exists()
    secret = flask(checkout, "gen-secret")
    assert secret.returncode == 0, secret.stderr
    assert len(secret.stdout.strip()) >= 32 and "\n" not in secret.stdout.strip()
    key = flask(checkout, "gen-api-key", "--name", "ops", "--role", "agent")
    assert key.returncode == 0 and key.stdout.startswith("ORCHESTRATOR_API_KEY_OPS=")


def test_commands_that_need_settings_say_so_in_one_line(checkout):
    routes = flask(checkout, "routes")
    assert routes.returncode != 0
    assert "Traceback" not in routes.stderr
    line = routes.stderr.strip()
    assert "\n" not in line
    assert "ORCHESTRATOR_JWT_SECRET" in line and "gen-secret" in line


def test_the_cli_reads_env_and_names_the_redis_it_used(checkout, redis_server, tmp_path):
    env_file = checkout / ".env"
    env_file.write_text(
        f"ORCHESTRATOR_JWT_SECRET={'s' * 40}\nREDIS_URL={redis_server.url}\n"
        f"ORCHESTRATOR_QUEUE_PREFIX=cli{free_port()}\n"
    )
    try:
        routes = flask(checkout, "routes")
        assert routes.returncode == 0, routes.stderr
        assert "/tasks/claim" in routes.stdout
        swept = flask(checkout, "sweep")
        assert swept.returncode == 0, swept.stderr
        assert f"swept Redis at 127.0.0.1:{redis_server.port}" in swept.stdout
        token = flask(checkout, "token", "--sub", "ops", "--role", "agent")
        assert token.returncode == 0 and token.stdout.count(".") == 2  # a JWT

        # A Redis that is not there: one line naming it, never its password.
        closed = free_port()
        down = flask(checkout, "sweep", REDIS_URL=f"redis://:hunter2-pw@127.0.0.1:{closed}/0")
        assert down.returncode != 0 and "Traceback" not in down.stderr
        assert f"Redis at 127.0.0.1:{closed} unavailable" in down.stderr
        assert "hunter2-pw" not in down.stderr + down.stdout
    finally:
        env_file.unlink()


@pytest.mark.parametrize("command", ["sweep", "reindex", "migrate-keys"])
def test_a_redis_command_names_an_unreachable_redis_in_one_line(checkout, command):
    closed = free_port()
    down = flask(
        checkout,
        command,
        ORCHESTRATOR_JWT_SECRET="s" * 40,
        REDIS_URL=f"redis://:hunter2-pw@127.0.0.1:{closed}/0",
    )
    assert down.returncode != 0 and "Traceback" not in down.stderr, down.stderr
    assert f"Redis at 127.0.0.1:{closed} unavailable" in down.stderr
    assert "hunter2-pw" not in down.stderr + down.stdout
