"""LOG_FORMAT: a readable console line for people, JSON lines for machines."""

from __future__ import annotations

import json
import logging
import time

import requests

from app.config import Settings
from app.observability import configure_logging
from tests.conftest import API_KEYS


def settings(**env: str) -> Settings:
    return Settings.from_env({"ORCHESTRATOR_JWT_SECRET": "x" * 40, **env})


def test_console_in_development_json_elsewhere_unless_told():
    assert settings(ENVIRONMENT="development").log_format == "console"
    assert settings(ENVIRONMENT="production", REDIS_URL="rediss://r:6380").log_format == "json"
    assert settings(ENVIRONMENT="staging").log_format == "json"
    assert settings(ENVIRONMENT="development", LOG_FORMAT="JSON").log_format == "json"


def emit(capsys, log_format: str, message: str) -> str:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", log_format)
        logging.getLogger("orchestrator.test").info(message, extra={"status": 200})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    return capsys.readouterr().out.strip()


def test_console_is_one_readable_line(capsys):
    line = emit(capsys, "console", "claimed")
    assert "\n" not in line and not line.startswith("{")
    assert "INFO" in line and "orchestrator.test: claimed" in line and "status=200" in line


def test_json_lines_carry_no_terminal_colours(capsys):
    line = json.loads(emit(capsys, "json", "\x1b[31mred\x1b[0m text"))
    assert line["message"] == "red text" and line["status"] == 200


def test_gunicorn_in_console_format(live_server):
    server = live_server(workers=1, LOG_FORMAT="console")
    requests.get(f"{server.url}/tasks", headers={"X-API-Key": API_KEYS["user"]}, timeout=5)
    # The access line is written after the response is sent: give a loaded machine time.
    deadline = time.monotonic() + 5
    while "path=/tasks" not in (text := server.logs()) and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = text.splitlines()
    assert not any(line.lstrip().startswith("{") for line in lines)
    assert any("gunicorn: Listening at" in line for line in lines)  # not gunicorn.error
    assert "gunicorn.error" not in text
    access = [line for line in lines if "path=/tasks" in line]
    assert access and "status=200" in access[0] and "principal=apikey:user" in access[0]
    assert API_KEYS["user"] not in text


def test_gunicorn_start_up_lines_are_not_labelled_errors_in_json(live_server):
    server = live_server(workers=1)
    records = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    starting = [r for r in records if "Listening at" in r.get("message", "")]
    assert starting and starting[0]["name"] == "gunicorn" and starting[0]["level"] == "INFO"
