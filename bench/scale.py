"""`make bench-scale`: does the service stay flat as the store grows?

Loads N tasks (default 1,000,000) with their events into a private redis-server through
the service's own domain scripts (many threads, not HTTP), leaving a mix of states, then
measures against a live gunicorn on that Redis: one-filter task listings (latency, and
how many requests a full page takes), the event replay of the oldest task, create and
claim throughput (wrk) next to the same on an empty prefix in the same run (both get the
same reserve of queued work for the claims; ROUNDS alternating rounds, the median of
their ratios), the slowest Redis call (SLOWLOG) during the reads and during the writes,
the machine's own stalls at rest (redis-cli --intrinsic-latency: a floor under any
SLOWLOG entry here) and Redis memory per stored task.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from app import create_app
from app.domain.keys import SENT_ONCE_MS, Keys
from app.domain.task_fields import stored_fields
from app.services import current_settings, redis_client, services
from bench.run import BENCH_KEY, run_wrk, service_env
from harness import ROOT, LiveServer, RedisServer, wait_until

LOADED, EMPTY = "scale", "empty"
BENCH = "apikey:bench"
TYPES = ("bugfix", "deploy", "faq", "monitor", "documentation")
# One task in DONE_EVERY is claimed and completed, one in FAIL_EVERY failed: a listing
# filtered by `failed` then looks for a rare status, the case that used to scan.
DONE_EVERY, FAIL_EVERY = 5, 97
# Throughput rounds per store, alternating, and more claims a second than this machine
# has made (to size the empty store's reserve of queued work).
ROUNDS, CLAIMS_PER_SECOND_AT_MOST = 6, 4000


def scale_env(redis_url: str, prefix: str, tasks: int) -> dict[str, str]:
    """The loader's and the servers' configuration: bench's, keeping every event."""
    env = {**service_env(redis_url), "ORCHESTRATOR_QUEUE_PREFIX": prefix}
    env["ORCHESTRATOR_EVENT_STREAM_MAXLEN"] = str(4 * tasks)
    return env


def load(
    redis_url: str,
    tasks: int,
    batch: int = 2000,
    *,
    prefix: str = LOADED,
    types: tuple[str, ...] = TYPES,
    finish: bool = True,
    stored: int | None = None,
) -> tuple[str, dict[str, str]]:
    """Create `tasks` tasks through the create script, pipelined `batch` at a time, then
    (with `finish`) claim and finish one in DONE_EVERY (completed) and FAIL_EVERY (failed)
    through the claim and status scripts; returns the oldest task's id and the scripts'
    names by SHA1 (the servers run the same scripts: SLOWLOG names them by SHA1)."""
    # The stream is sized for the whole store (scale_env): a loader sized for fewer tasks
    # would trim away the events of those loaded before.
    app = create_app(scale_env(redis_url, prefix, stored or tasks))
    with app.app_context():
        scripts, settings = services().tasks.scripts, current_settings()
        client = redis_client(app)
        started, first = time.monotonic(), None
        for start in range(0, tasks, batch):
            numbers = range(start, min(tasks, start + batch))
            with client.pipeline(transaction=False) as pipe:
                for n in numbers:
                    request = {"type": types[n % len(types)], "priority": "P3"}
                    request["payload"] = {"n": n, "environment": "staging"}  # deploys ungated
                    fields, sla_ms = stored_fields(request, str(uuid.uuid4()), BENCH, settings)
                    scripts.queue(pipe, "create_task", task=fields, sla_target_ms=sla_ms)
                created = [json.loads(reply)["task"] for reply in pipe.execute()]
            first = first or created[0]["task_id"]
            finishing = [
                (task["assigned_to"], "failed" if n % FAIL_EVERY == 0 else "completed")
                for n, task in zip(numbers, created, strict=True)
                if finish and (n % DONE_EVERY == 0 or n % FAIL_EVERY == 0)
            ]
            with client.pipeline(transaction=False) as pipe:
                for agent, _ in finishing:
                    scripts.queue(
                        pipe, "claim_task", agent=agent, lease_ms=600_000, principal=BENCH
                    )
                claimed = [json.loads(reply).get("task") for reply in pipe.execute()]
            with client.pipeline(transaction=False) as pipe:
                for task, (_, outcome) in zip(claimed, finishing, strict=True):
                    if task:
                        scripts.queue(
                            pipe,
                            "set_task_status",
                            task_id=task["task_id"],
                            status=outcome,
                            principal=BENCH,
                        )
                pipe.execute()
            done = start + len(numbers)
            if done % 50_000 < batch:
                rate = done / (time.monotonic() - started)
                print(f"  loaded {done:,} tasks ({rate:,.0f}/s)", flush=True)
        return first, scripts.names_by_sha()


def timed_get(session: requests.Session, url: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = session.get(url, timeout=60)
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000, response.json()


def listing(session, base: str, query: str, samples: int) -> dict:
    """Latency of one page and how many requests a full page of 100 takes."""
    for _ in range(20):  # every worker has loaded the script and warmed its connection
        timed_get(session, f"{base}/tasks?limit=100&{query}")
    latencies = [timed_get(session, f"{base}/tasks?limit=100&{query}")[0] for _ in range(samples)]
    requests_needed, found, cursor = 0, 0, None
    while found < 100 and requests_needed < 50:
        url = f"{base}/tasks?limit=100&{query}" + (f"&cursor={cursor}" if cursor else "")
        _, body = timed_get(session, url)
        requests_needed, found = requests_needed + 1, found + body["count"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else 0,
        "requests_for_a_page": requests_needed,
        "found": found,
    }


def replay(session, base: str, task_id: str) -> dict:
    """Requests and time to read every event of one task: tail until the cursor stops.

    `requests` counts the requests that returned events; a tailing client then makes one
    more, which answers none and confirms the end (not counted)."""
    started, count, requests_needed, after = time.perf_counter(), 0, 0, "0-0"
    for _ in range(10000):
        _, body = timed_get(session, f"{base}/events?task_id={task_id}&after={after}&limit=1000")
        if not body["count"]:
            break
        requests_needed, count = requests_needed + 1, count + body["count"]
        if not body["next"] or body["next"] == after:
            break
        after = body["next"]
    return {
        "events": count,
        "requests": requests_needed,
        "ms": (time.perf_counter() - started) * 1000,
    }


def throughput(base: str, seconds: int, raw) -> dict:
    """create and claim req/s at 16 connections, and the Redis CPU each request cost
    (commandstats, every command: the rate limit's hit rides on the request's script).
    Redis' µs move less with the machine's noise than req/s do."""
    create = '{"type": "bugfix", "priority": "P3", "payload": {"repo": "x"}}'
    runs = {
        "create": ("/tasks", create),
        "claim": ("/tasks/claim", '{"agent": "dev_agent"}'),
    }
    measured = {}
    for name, (path, body) in runs.items():
        raw.config_resetstat()
        result = run_wrk(base, path, 16, seconds, method="POST", body=body, key=BENCH_KEY)
        usec = sum(v["usec"] for v in raw.info("commandstats").values())
        measured[name] = {**result, "redis_us": usec / max(1, result["requests"])}
    return measured


def slowest(raw) -> list[dict]:
    """Every Redis call over the SLOWLOG threshold since its last reset, slowest first."""
    return sorted(raw.slowlog_get(1000), key=lambda entry: -entry["duration"])


def intrinsic_latency_ms(seconds: int) -> float:
    """The longest this machine kept a busy process off the CPU in `seconds` (Redis' own
    probe, which calls no Redis): a floor under any SLOWLOG entry measured here."""
    out = subprocess.run(
        ["redis-cli", "--intrinsic-latency", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return max(int(us) for us in re.findall(r"Max latency so far: (\d+) microseconds", out)) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200)  # p99 of 200: not just the max
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=ROOT / "bench" / "results"))
    redis_server = RedisServer(work / "redis").start()
    raw = redis_server.client()
    servers: list[LiveServer] = []
    try:
        before = raw.info("memory")["used_memory"]
        print(f"loading {args.tasks:,} tasks ...", flush=True)
        oldest, script_names = load(redis_server.url, args.tasks)
        # The loader's claims and completions keep their replies SENT_ONCE_MS (lib.lua,
        # once), the only keys it leaves with an expiry: wait until Redis has expired
        # them, so only what stays with the tasks is counted.
        wait_until(
            lambda: raw.info("keyspace").get("db0", {}).get("expires", 0) == 0,
            SENT_ONCE_MS / 1000 + 60,
            interval=1,
        )
        per_task = (raw.info("memory")["used_memory"] - before) / args.tasks
        keys = Keys(LOADED)
        events = raw.xlen(keys.name("events"))
        sample = keys.task(oldest)
        encoding = f"{raw.object('encoding', sample)}, {raw.memory_usage(sample)} B"
        # The claims (dev_agent's queue) take what the creates made and this reserve, the
        # same in both stores: a claim that finds its queue empty answers 204 at once,
        # which would flatter the store whose queue ran dry.
        reserve = CLAIMS_PER_SECOND_AT_MOST * args.seconds * ROUNDS
        for prefix in (LOADED, EMPTY):
            load(
                redis_server.url,
                reserve,
                prefix=prefix,
                types=("bugfix",),
                finish=False,
                stored=args.tasks,
            )
        raw.config_set("slowlog-log-slower-than", 1000)  # µs: everything over 1 ms
        raw.slowlog_reset()
        for prefix in (LOADED, EMPTY):
            env = scale_env(redis_server.url, prefix, args.tasks)
            servers.append(LiveServer(env, None, work / f"{prefix}.log").start())
        loaded, empty = (server.url for server in servers)
        session = requests.Session()
        session.headers["X-API-Key"] = BENCH_KEY
        rows = {
            f"GET /tasks?{query}": listing(session, loaded, query, args.samples)
            for query in (
                "status=failed",
                "status=completed",
                "type=deploy",
                "assigned_to=faq_agent",
            )
        }
        event_replay = replay(session, loaded, oldest)
        slow_reads = slowest(raw)
        stall_ms = intrinsic_latency_ms(10)
        raw.slowlog_reset()
        # Alternately, ROUNDS each, the first store first and then last: the machine's
        # noise, and any drift in its speed, then weigh on both alike.
        rounds = []
        for n in range(ROUNDS):
            order = [("loaded", loaded), ("empty", empty)][:: 1 if n % 2 == 0 else -1]
            rounds.append({store: throughput(url, args.seconds, raw) for store, url in order})
        speed = {
            store: {
                name: {
                    measure: statistics.mean(r[store][name][measure] for r in rounds)
                    for measure in ("rps", "redis_us")
                }
                for name in ("create", "claim")
            }
            for store in ("loaded", "empty")
        }
        speed["rounds"] = {
            name: [r["loaded"][name]["rps"] / r["empty"][name]["rps"] for r in rounds]
            for name in ("create", "claim")
        }
        slow_writes = slowest(raw)

        def called(entry) -> str:
            words = entry["command"].decode(errors="replace").split()
            sha = words[1] if len(words) > 1 and words[0].upper() == "EVALSHA" else ""
            return script_names.get(sha, " ".join(words[:2]))

        slowest_calls = [
            f"{phase}: {e['duration'] / 1000:.1f} ms {called(e)}"
            for phase, entries in (("reads", slow_reads), ("writes", slow_writes))
            for e in entries[:3]
        ]
    finally:
        for server in servers:
            server.stop()
        redis_server.stop()
    slowest_ms = {
        phase: (entries[0]["duration"] / 1000 if entries else 0)
        for phase, entries in (("reads", slow_reads), ("writes", slow_writes))
    }
    report = render(args.tasks, events, per_task, rows, event_replay, slowest_ms, speed)
    report += (
        f"\nThis machine's own stalls at rest (`redis-cli --intrinsic-latency 10`, a busy "
        f"loop that calls no Redis, just before the writes): up to {stall_ms:.1f} ms\n"
    )
    report += f"\nOne task's hash (the oldest): {encoding}\n"
    report += "".join(f"\nSLOWLOG: {line}" for line in slowest_calls) + "\n"
    print(report)
    (ROOT / "bench" / "results" / "scale.md").write_text(report)
    return 0


def render(tasks, events, per_task, rows, event_replay, slowest_ms, speed) -> str:
    lines = [
        f"{tasks:,} tasks and {events:,} events stored; Redis memory per task (with its "
        f"events): {per_task:,.0f} B; slowest Redis call (SLOWLOG) during the reads: "
        f"{slowest_ms['reads']:.1f} ms, during the writes under wrk: "
        f"{slowest_ms['writes']:.1f} ms",
        "",
        "| read | p50 ms | p99 ms | requests for a full page | rows found |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['requests_for_a_page']} | {row['found']} |"
        )
    lines.append(
        f"| GET /events?task_id=<oldest> | {event_replay['ms']:.1f} (all) | | "
        f"{event_replay['requests']} | {event_replay['events']} events |"
    )
    lines += [
        "",
        "| write | empty store req/s | loaded store req/s | ratio (median of the rounds) "
        "| ratio per round "
        "| Redis µs/req, empty / loaded |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("create", "claim"):
        empty, loaded = speed["empty"][name], speed["loaded"][name]
        each = " ".join(f"{ratio:.2f}" for ratio in speed["rounds"][name])
        lines.append(
            f"| {name} | {empty['rps']:.0f} | {loaded['rps']:.0f} | "
            f"{statistics.median(speed['rounds'][name]):.2f} | {each} | "
            f"{empty['redis_us']:.0f} / {loaded['redis_us']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
