"""A full Redis: creates stop at the high watermark, the backlog still drains, OOM is a 503."""

from __future__ import annotations

import pytest
import redis
import requests

from tests.conftest import HEADERS
from tests.helpers import PLAIN_TASK, metric_sample


def fill(client: redis.Redis, until_percent: float, tag: str) -> None:
    """Write junk until Redis uses `until_percent` of its maxmemory (or refuses writes)."""
    limit = int(client.config_get("maxmemory")["maxmemory"])
    n = 0
    try:
        while client.info("memory")["used_memory"] * 100 < limit * until_percent:
            client.set(f"junk:{tag}:{n}", "x" * 8192)
            n += 1
    except redis.OutOfMemoryError:
        pass


@pytest.mark.slow
def test_a_full_redis_refuses_creates_but_drains_and_says_why(own_redis, live_server):
    server = live_server(workers=1, redis_url=own_redis.url)
    url, client = server.url, own_redis.client()
    created = [
        requests.post(f"{url}/tasks", json=PLAIN_TASK, headers=HEADERS["agent"], timeout=5)
        for _ in range(2)
    ]
    assert [r.status_code for r in created] == [201, 201]
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 4 * 1024 * 1024)

    fill(client, 93, "high")  # past the 90 % watermark, below 100 %
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
    assert health.status_code == 200 and health.json()["status"] == "degraded"

    fill(client, 101, "full")  # until Redis refuses writes
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
    text = requests.get(f"{url}/metrics", timeout=5).text
    used = metric_sample(text, "orchestrator_redis_memory_used_bytes")
    limit = metric_sample(text, "orchestrator_redis_memory_max_bytes")
    assert limit == int(client.config_get("maxmemory")["maxmemory"]) and used >= limit
