"""Redis work per request: commands (inside scripts and the limiter's included) and the
primary's CPU time (the usec commandstats gives the scripts), for each kind of request.

In-process (Flask's test client) against a private redis-server, so the numbers count
Redis work only, whatever the machine's load: `make bench` prints them beside wrk's.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from app import create_app
from bench.run import BENCH_KEY, service_env
from harness import RedisServer

SAMPLES = 200
CLIENT_SIDE = ("evalsha", "eval", "ping")


def measure(raw, call, samples: int = SAMPLES) -> tuple[float, float]:
    """(commands, Redis CPU µs) per call, averaged over `samples` calls."""
    raw.config_resetstat()
    for _ in range(samples):
        call()
    stats = raw.info("commandstats")
    commands = sum(v["calls"] for k, v in stats.items() if k != "cmdstat_config|resetstat")
    usec = sum(stats.get(f"cmdstat_{name}", {}).get("usec", 0) for name in CLIENT_SIDE)
    return commands / samples, usec / samples


def main() -> int:
    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-commands-"))).start()
    try:
        client = create_app(service_env(server.url)).test_client()
        headers = {"X-API-Key": BENCH_KEY}
        raw = server.client()
        body = {"type": "bugfix", "priority": "P3", "payload": {"repo": "x"}}

        def post(path, json):
            response = client.post(path, json=json, headers=headers)
            assert response.status_code in (200, 201, 204), response.get_data(as_text=True)
            return response.get_json(silent=True)

        for _ in range(2 * SAMPLES):  # queued work for the claims
            post("/tasks", body)
        claimed = []
        rows = {
            "POST /tasks": measure(raw, lambda: post("/tasks", body)),
            "POST /tasks/claim": measure(
                raw, lambda: claimed.append(post("/tasks/claim", {"agent": "dev_agent"}))
            ),
        }
        leases = iter(claimed)
        rows["POST /tasks/<id>/heartbeat"] = measure(
            raw, lambda: post(f"/tasks/{next(leases)['task_id']}/heartbeat", {})
        )
        finished = iter(claimed)

        def complete():
            task_id = next(finished)["task_id"]
            response = client.patch(
                f"/tasks/{task_id}/status", json={"status": "completed"}, headers=headers
            )
            assert response.status_code == 200, response.get_data(as_text=True)

        rows["PATCH /tasks/<id>/status"] = measure(raw, complete)
        task_id = claimed[0]["task_id"]
        rows["GET /tasks/<id>"] = measure(
            raw, lambda: client.get(f"/tasks/{task_id}", headers=headers)
        )
        event = {"event_type": "bench.tick", "source_agent": "bench", "payload": {"n": 1}}
        rows["POST /events/publish"] = measure(raw, lambda: post("/events/publish", event))
        rows["GET /health"] = measure(raw, lambda: client.get("/health"))
        rows["GET /tasks?status=assigned&limit=20"] = measure(
            raw, lambda: client.get("/tasks?status=assigned&limit=20", headers=headers)
        )
    finally:
        server.stop()
    print("| request | Redis commands | Redis CPU µs |")
    print("|---|---|---|")
    for name, (commands, usec) in rows.items():
        print(f"| `{name}` | {commands:.1f} | {usec:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
