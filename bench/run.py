"""`make bench`: the service under its shipped gunicorn config, driven by wrk, next to a ceiling.

Starts its own redis-server, the service (rate limits raised) and a bare Flask app that
does one Redis PING per request, both under gunicorn.conf.py; runs each scenario at 16
and 64 connections; prints req/s, p50/p99 latency, Redis round trips (client commands)
and Redis commands executed (inside scripts too) per request, the CPU time gunicorn (its
master and workers) and Redis spent per request, and the share of the
ceiling: the median of `--repeats` pairs (ceiling, scenario) run one beside the other,
which goes first alternating, as this machine's speed drifts by tens of percent within
minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import redis
import requests

from app import create_app
from app.rate_budgets import BUDGETS
from app.services import services
from bench.percall import redis_cpu_seconds
from harness import ROOT, LiveServer, RedisServer

BENCH_KEY = "bench-agent-key-0123456789abcdef"
# Commands a client sends itself; everything else in commandstats ran inside a script.
# GET and SET are left out: the service never sends them bare, and the limiter's script
# runs both, so counting them would report its one round trip as three.
CLIENT_COMMANDS = {
    "evalsha",
    "eval",
    "evalsha_ro",
    "eval_ro",
    "ping",
    "script|load",
    "multi",
    "exec",
}
CEILING = "ceiling: Flask + PING"
# Shares of the ceiling issue 13 asks for (at c=16 and c=64).
TARGETS = {
    "POST /tasks": 0.40,
    "POST /tasks/claim": 0.40,
    "POST /events/publish": 0.50,
    "GET /tasks/<id>": 0.60,
    "GET /health": 0.75,
}
# The realistic-limits scenario: this many principals, each under this per-minute limit
# (wrk's script rotates among them), next to the one principal with limits raised.
PRINCIPALS = 400
REALISTIC_LIMIT = "600"


def service_env(redis_url: str, limit: str = "100000000") -> dict[str, str]:
    big = limit
    principals = {
        f"ORCHESTRATOR_API_KEY_BENCH{n:04d}": f"{BENCH_KEY}{n:04d}:admin" for n in range(PRINCIPALS)
    }
    return {
        **principals,
        "ENVIRONMENT": "production",
        "REDIS_URL": redis_url,
        "ORCHESTRATOR_JWT_SECRET": "bench-secret-" + "x" * 40,
        "ORCHESTRATOR_API_KEY_BENCH": f"{BENCH_KEY}:admin",
        # Every budget, so no scenario measures 429s (reads and agent ops included).
        **{budget.variable: big for budget in BUDGETS},
        "ORCHESTRATOR_RATE_LIMIT_DEFAULT": big,
        "ORCHESTRATOR_TRUSTED_PROXIES": "0",
        "ORCHESTRATOR_QUEUE_PREFIX": "bench",
        "LOG_LEVEL": "WARNING",
    }


def command_counts(client: redis.Redis) -> tuple[int, int]:
    """(client commands, all commands) since the last CONFIG RESETSTAT.

    The INFO that reads commandstats is not in its own answer, so every INFO counted
    ran inside a script (the create script's memory check, /health's).
    """
    stats = client.info("commandstats")
    client_side = total = 0
    for name, values in stats.items():
        command = name.removeprefix("cmdstat_")
        if command == "config|resetstat":
            continue
        total += values["calls"]
        if command in CLIENT_COMMANDS:
            client_side += values["calls"]
    return client_side, total


def run_wrk(
    url: str,
    path: str,
    connections: int,
    seconds: int,
    *,
    method="GET",
    body="",
    key="",
    principals=0,
) -> dict:
    env = {
        **os.environ,
        "BENCH_KEYS": str(principals),
        "BENCH_METHOD": method,
        "BENCH_PATH": path,
        "BENCH_BODY": body,
        "BENCH_KEY": key,
    }
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "scenarios.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    fields = dict(re.findall(r"(\w+)=(\d+)", out.split("BENCH", 1)[1]))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {
        "rps": rps,
        "requests": int(fields["requests"]),
        "errors": int(fields["errors"]),
        "non2xx": int(fields["non2xx"]),
        "p50_ms": int(fields["p50_us"]) / 1000,
        "p99_ms": int(fields["p99_us"]) / 1000,
    }


def seed_tasks(redis_url: str, count: int, threads: int = 8) -> None:
    """Queue `count` tasks for dev_agent through the domain's create script, so every claim
    in the claim scenario hands out real work (an empty queue would measure 204s)."""
    app = create_app(service_env(redis_url))
    with app.app_context():
        store = services().tasks
        request = {"type": "bugfix", "priority": "P3", "payload": {"repo": "x"}}
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _: store.create(request, "apikey:bench"), range(count)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="ceiling/scenario pairs each")
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--only", default="", help="run only scenarios whose name has this")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=ROOT / "bench" / "results"))
    redis_server = RedisServer(work / "redis").start()
    client = redis_server.client()
    # workers=None: the shipped default, 2 * cores + 1, for both.
    service = LiveServer(service_env(redis_server.url), None, work / "service.log")
    realistic = LiveServer(
        service_env(redis_server.url, REALISTIC_LIMIT), None, work / "realistic.log"
    )
    # Same environment: gunicorn.conf.py validates the settings before any app loads.
    ceiling = LiveServer(
        service_env(redis_server.url), None, work / "ceiling.log", target="bench.ceiling:app"
    )
    rows, ceilings = [], []
    try:
        service.start()
        ceiling.start()
        realistic.start()
        headers = {"X-API-Key": BENCH_KEY}
        task = requests.post(
            f"{service.url}/tasks",
            json={"type": "faq", "priority": "P3"},
            headers=headers,
            timeout=10,
        ).json()
        publish = json.dumps(
            {"event_type": "bench.tick", "source_agent": "bench", "payload": {"n": 1}}
        )
        create = json.dumps({"type": "bugfix", "priority": "P3", "payload": {"repo": "x"}})
        scenarios = [
            ("GET /health", service.url, "/health", "GET", ""),
            ("POST /tasks", service.url, "/tasks", "POST", create),
            (f"POST /tasks, {PRINCIPALS} keys at 600/min", realistic.url, "/tasks", "POST", create),
            ("GET /tasks/<id>", service.url, f"/tasks/{task['task_id']}", "GET", ""),
            ("POST /events/publish", service.url, "/events/publish", "POST", publish),
            (
                "POST /tasks/claim",
                service.url,
                "/tasks/claim",
                "POST",
                json.dumps({"agent": "dev_agent"}),
            ),
        ]

        by_url = {server.url: server for server in (service, realistic, ceiling)}

        def measure(name, url, path, method, body, conns) -> dict:
            requests.get(f"{url}{path}" if method == "GET" else f"{url}/", timeout=10)
            client.config_resetstat()
            app_cpu, redis_cpu = by_url[url].cpu_seconds(), redis_cpu_seconds(client)
            result = run_wrk(
                url,
                path,
                conns,
                args.seconds,
                method=method,
                body=body,
                key=BENCH_KEY,
                principals=PRINCIPALS if url == realistic.url else 0,
            )
            calls, commands = command_counts(client)
            done = max(1, result["requests"])
            result.update(
                name=name,
                connections=conns,
                calls_per_req=calls / done,
                commands_per_req=commands / done,
                app_us=(by_url[url].cpu_seconds() - app_cpu) * 1e6 / done,
                redis_us=(redis_cpu_seconds(client) - redis_cpu) * 1e6 / done,
            )
            print(
                f"{name:24} c={conns:<3} {result['rps']:9.0f} req/s  "
                f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                f"redis calls/req {result['calls_per_req']:.2f}  "
                f"CPU µs/req {result['app_us']:.0f} + {result['redis_us']:.0f}  "
                f"non-2xx {result['non2xx']}",
                flush=True,
            )
            return result

        for name, url, path, method, body in scenarios:
            if args.only and args.only not in name:
                continue
            for conns in connections:
                if path == "/tasks/claim":
                    # More than the fastest claim rate seen here can take in the runs.
                    seed_tasks(redis_server.url, 4000 * args.seconds * args.repeats)
                # Pairs of the ceiling and the scenario, the first of each pair alternating:
                # this machine's speed drifts by tens of percent within minutes, so each
                # share is the median of its pairs' ratios, not one ratio to a ceiling
                # measured at another moment.
                pairs = []
                order = [(CEILING, ceiling.url, "/", "GET", ""), (name, url, path, method, body)]
                for n in range(args.repeats):
                    measured = {}
                    for run in order[:: 1 if n % 2 == 0 else -1]:
                        measured[run[0]] = measure(*run, conns)
                    ceilings.append(measured[CEILING])
                    pairs.append((measured[name], measured[CEILING]))
                rows.append(summarize(name, conns, pairs))
    finally:
        service.stop()
        ceiling.stop()
        realistic.stop()
        redis_server.stop()
    report = render(rows, ceilings, connections)
    print(report)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "latest.md").write_text(report)
    shutil.rmtree(work, ignore_errors=True)  # a failed run keeps its logs for a look
    return 0


def summarize(name: str, conns: int, pairs: list[tuple[dict, dict]]) -> dict:
    """One scenario's row from its (scenario, ceiling) pairs: medians, and each pair's share."""
    runs = [run for run, _ in pairs]
    shares = [run["rps"] / ceiling["rps"] for run, ceiling in pairs if ceiling["rps"]]
    return {
        "name": name,
        "connections": conns,
        "rps": statistics.median(run["rps"] for run in runs),
        "share": statistics.median(shares) if shares else 0,
        "shares": shares,
        "p50_ms": statistics.median(run["p50_ms"] for run in runs),
        "p99_ms": statistics.median(run["p99_ms"] for run in runs),
        "calls_per_req": statistics.mean(run["calls_per_req"] for run in runs),
        "commands_per_req": statistics.mean(run["commands_per_req"] for run in runs),
        "app_us": statistics.median(run["app_us"] for run in runs),
        "redis_us": statistics.median(run["redis_us"] for run in runs),
        "non2xx": sum(run["non2xx"] for run in runs),
    }


def render(rows: list[dict], ceilings: list[dict], connections: list[int]) -> str:
    """The table: the ceiling's mean and range per size, then each scenario's median share
    of the ceiling over its pairs (their range beside it) and its median latencies."""
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; wrk, service, ceiling "
        "and Redis share the machine. Each share is the median of the scenario's ratios to "
        "the ceiling run beside it, pair by pair (their range in brackets).",
        "",
        "| scenario | conns | req/s | % of ceiling | p50 ms | p99 ms | p99 / p50 "
        "| Redis calls/req | Redis cmds/req | CPU µs/req, gunicorn / Redis | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for conns in connections:
        runs = [r for r in ceilings if r["connections"] == conns]
        if not runs:
            continue
        rps = [r["rps"] for r in runs]
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        lines.append(
            f"| {CEILING} ({len(runs)} runs, {min(rps):.0f}-{max(rps):.0f}) | {conns} | "
            f"{statistics.median(rps):.0f} | 100% | {p50:.2f} | {p99:.2f} | {p99 / p50:.1f} | "
            f"{statistics.mean(r['calls_per_req'] for r in runs):.2f} | "
            f"{statistics.mean(r['commands_per_req'] for r in runs):.1f} | "
            f"{statistics.median(r['app_us'] for r in runs):.0f} / "
            f"{statistics.median(r['redis_us'] for r in runs):.0f} | "
            f"{sum(r['non2xx'] for r in runs)} |"
        )
    for r in rows:
        target = TARGETS.get(r["name"])
        mark = "" if target is None else (" ✓" if r["share"] >= target else f" ✗ ({target:.0%})")
        spread = f"{min(r['shares']):.0%}-{max(r['shares']):.0%}" if r["shares"] else "-"
        tail = r["p99_ms"] / r["p50_ms"] if r["p50_ms"] else 0
        lines.append(
            f"| {r['name']} | {r['connections']} | {r['rps']:.0f} | "
            f"{r['share']:.0%}{mark} [{spread}] | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{tail:.1f}{'' if tail <= 2 else ' ✗'} | {r['calls_per_req']:.2f} | "
            f"{r['commands_per_req']:.1f} | {r['app_us']:.0f} / {r['redis_us']:.0f} | "
            f"{r['non2xx']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
