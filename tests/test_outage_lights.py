"""With Redis down or hung, the service's own lights stay on: /metrics, the docs, /, tokens."""

from __future__ import annotations

import logging
import time

import pytest

from tests.conftest import HEADERS

REDIS_FREE = ("/", "/docs", "/redoc", "/openapi.json")


def assert_lights_on(client) -> None:
    for path in REDIS_FREE:
        assert client.get(path).status_code == 200, path
    token = client.post("/auth/token", headers=HEADERS["agent"])
    assert token.status_code == 200 and token.json["access_token"]
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "orchestrator_redis_up 0.0" in metrics.get_data(as_text=True)


def test_redis_down_leaves_metrics_docs_and_tokens_up(make_app, own_redis, caplog):
    password_url = own_redis.url.replace("redis://", "redis://:s3cret-pass@")
    client = make_app(redis_url=password_url).test_client()
    own_redis.stop()
    with caplog.at_level(logging.WARNING):
        assert_lights_on(client)
        # The data endpoints say Redis is the problem.
        tasks = client.get("/tasks", headers=HEADERS["user"])
        assert tasks.status_code == 503 and tasks.json == {"detail": "Redis unavailable"}
        assert client.get("/health").status_code == 503
    logged = caplog.text
    assert f"127.0.0.1:{own_redis.port}" in logged  # log lines say which Redis
    assert "s3cret-pass" not in logged


def test_redis_hung_costs_one_timeout_not_one_per_request(make_app, own_redis):
    client = make_app(redis_url=own_redis.url, HEALTH_CHECK_TIMEOUT="1").test_client()
    assert client.get("/metrics").status_code == 200  # scripts loaded while Redis answers
    own_redis.freeze()
    try:
        started = time.monotonic()
        assert_lights_on(client)
        assert time.monotonic() - started < 1 + 1.5  # the first call waits; the rest do not
        started = time.monotonic()
        for _ in range(5):
            assert client.get("/openapi.json").status_code == 200
            assert client.get("/metrics").status_code == 200
        # Without the breaker each of these 10 would wait the 1 s timeout.
        assert time.monotonic() - started < 3
    finally:
        own_redis.thaw()


def test_the_limits_still_apply_while_redis_answers(make_app):
    client = make_app(ORCHESTRATOR_RATE_LIMIT_DEFAULT="2").test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.slow
def test_redis_down_live_metrics_and_docs_up(live_server, own_redis):
    import requests

    server = live_server(workers=2, redis_url=own_redis.url)
    own_redis.stop()
    for path in REDIS_FREE:
        assert requests.get(server.url + path, timeout=10).status_code == 200, path
    metrics = requests.get(server.url + "/metrics", timeout=10)
    assert metrics.status_code == 200 and "orchestrator_redis_up 0.0" in metrics.text
    tasks = requests.get(server.url + "/tasks", headers=HEADERS["user"], timeout=10)
    assert tasks.status_code == 503
    own_redis.start()
    time.sleep(2.5)  # the breaker stays open at most max(2, HEALTH_CHECK_TIMEOUT) s
    metrics = requests.get(server.url + "/metrics", timeout=10)
    assert "orchestrator_redis_up 1.0" in metrics.text
