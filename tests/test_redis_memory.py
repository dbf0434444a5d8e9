"""A full Redis: creates stop at the high watermark, the backlog still drains, OOM is a 503."""

from __future__ import annotations

import pytest
import redis
import requests

from tests.conftest import HEADERS
from tests.helpers import PLAIN_TASK, metric_sample


def fill(client: redis.Redis, until_percent: float) -> None:
    """Write junk until Redis uses `until_percent` of its maxmemory."""
    limit = int(client.config_get("maxmemory")["maxmemory"])
    n = 0
    while client.info("memory")["used_memory"] * 100 < limit * until_percent:
        client.set(f"junk:{n}", "x" * 8192)
        n += 1


@pytest.mark.slow
def test_a_full_redis_refuses_creates_but_drains_and_says_why(own_redis, live_server):
    server = live_server(workers=1, redis_url=own_redis.url)
    url, client = server.url, own_redis.client()
    created = [
        requests.post(f"{url}/tasks", json=PLAIN_TASK, headers=HEADERS["agent"], timeout=5)
        for _ in range(2)
    ]
    assert [r.status_code for r in created] == [201, 201]
    # Each script the service loads adds ~33 KB to used_memory: load /health's now, and
    # leave room above the watermark for claim and complete to load theirs.
    assert requests.get(f"{url}/health", timeout=5).json()["status"] == "healthy"
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 8 * 1024 * 1024)

    fill(client, 91)  # past the 90 % watermark, ~800 KB below 100 %
    refused = requests.post(f"{url}/tasks", json=PLAIN_TASK, headers=HEADERS["agent"], timeout=5)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    assert "high watermark" in refused.json()["detail"]
    claim = requests.post(
        f"{url}/tasks/claim", json={"agent": "dev_agent"}, headers=HEADERS["agent"], timeout=5
    )
    assert claim.status_code == 200
    done = requests.patch(
        f"{url}/tasks/{claim.json()['task_id']}/status",
        json={"status": "completed"},
        headers=HEADERS["agent"],
        timeout=5,
    )
    assert done.status_code == 200 and done.json()["task"]["status"] == "completed"
    health = requests.get(f"{url}/health", timeout=5)
    assert (health.status_code, health.json()["status"]) == (200, "degraded"), health.text

    # Full: a limit below what Redis holds (filling up to it would leave used_memory a few
    # KB either side of the limit, as the refused write's buffer is freed). The write
    # first makes the stats snapshot stale, so /health must store a new one into a full Redis.
    client.set("junk:last", "x" * 8192)
    client.config_set("maxmemory", client.info("memory")["used_memory"] - 256 * 1024)
    published = requests.post(
        f"{url}/events/publish",
        json={"event_type": "deploy.started", "source_agent": "ci", "payload": {}},
        headers=HEADERS["agent"],
        timeout=5,
    )
    assert published.status_code == 503
    assert published.json() == {"detail": "Redis is out of memory"}
    assert int(published.headers["Retry-After"]) > 0
    task_id = created[1].json()["task_id"]
    read = requests.get(f"{url}/tasks/{task_id}", headers=HEADERS["user"], timeout=5)
    assert read.status_code == 200
    health = requests.get(f"{url}/health", timeout=5)
    assert health.status_code == 503
    assert health.json()["redis"] == "out_of_memory" and health.json()["status"] == "unhealthy"
    assert health.json()["redis_memory"]["used_bytes"] >= health.json()["redis_memory"]["max_bytes"]
    text = requests.get(f"{url}/metrics", timeout=5).text
    used = metric_sample(text, "orchestrator_redis_memory_used_bytes")
    limit = metric_sample(text, "orchestrator_redis_memory_max_bytes")
    assert limit == int(client.config_get("maxmemory")["maxmemory"]) and used >= limit
