"""Redis work per request: commands (inside scripts and the limiter's included) and the
primary's CPU time (the usec commandstats gives the scripts), for each kind of request.

In-process (Flask's test client) against a private redis-server, so the numbers count
Redis work only, whatever the machine's load: `make bench` prints them beside wrk's.
`--callgrind` runs that redis-server under valgrind and counts the instructions it runs
per request instead of its µs: the same for a tree on any machine, so two trees' figures
compare even from separate runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from app import create_app
from bench.callgrind import Callgrind, command
from bench.run import BENCH_KEY, service_env
from harness import RedisServer

SAMPLES = 200
CLIENT_SIDE = ("evalsha", "eval", "ping")


def measure(raw, counter: Callgrind | None, call, samples: int = SAMPLES) -> tuple[float, float]:
    """(commands, Redis CPU µs or, with a counter, thousand instructions) per call,
    averaged over `samples` calls."""
    raw.config_resetstat()
    if counter:
        counter.start()
    for _ in range(samples):
        call()
    if counter:
        instructions = counter.stop()
    stats = raw.info("commandstats")
    commands = sum(v["calls"] for k, v in stats.items() if k != "cmdstat_config|resetstat")
    if counter:
        return commands / samples, instructions / samples / 1000
    usec = sum(stats.get(f"cmdstat_{name}", {}).get("usec", 0) for name in CLIENT_SIDE)
    return commands / samples, usec / samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--callgrind", action="store_true", help="count Redis' instructions")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    out_file = directory / "callgrind" / "callgrind.out"
    if args.callgrind:
        out_file.parent.mkdir()
    launcher = tuple(command(out_file)) if args.callgrind else ()
    server = RedisServer(directory / "redis", launcher=launcher).start()
    counter = Callgrind(server.process.pid, out_file) if args.callgrind else None
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
            "POST /tasks": measure(raw, counter, lambda: post("/tasks", body)),
            "POST /tasks/claim": measure(
                raw, counter, lambda: claimed.append(post("/tasks/claim", {"agent": "dev_agent"}))
            ),
        }
        leases = iter(claimed)
        rows["POST /tasks/<id>/heartbeat"] = measure(
            raw, counter, lambda: post(f"/tasks/{next(leases)['task_id']}/heartbeat", {})
        )
        finished = iter(claimed)

        def complete():
            task_id = next(finished)["task_id"]
            response = client.patch(
                f"/tasks/{task_id}/status", json={"status": "completed"}, headers=headers
            )
            assert response.status_code == 200, response.get_data(as_text=True)

        rows["PATCH /tasks/<id>/status"] = measure(raw, counter, complete)
        task_id = claimed[0]["task_id"]
        rows["GET /tasks/<id>"] = measure(
            raw, counter, lambda: client.get(f"/tasks/{task_id}", headers=headers)
        )
        event = {"event_type": "bench.tick", "source_agent": "bench", "payload": {"n": 1}}
        rows["POST /events/publish"] = measure(raw, counter, lambda: post("/events/publish", event))
        rows["GET /health"] = measure(raw, counter, lambda: client.get("/health"))
        rows["GET /tasks?status=assigned&limit=20"] = measure(
            raw, counter, lambda: client.get("/tasks?status=assigned&limit=20", headers=headers)
        )
    finally:
        server.stop()
    unit = "Redis instructions (thousands)" if args.callgrind else "Redis CPU µs"
    print(f"| request | Redis commands | {unit} |")
    print("|---|---|---|")
    for name, (commands, usec) in rows.items():
        print(f"| `{name}` | {commands:.1f} | {usec:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
