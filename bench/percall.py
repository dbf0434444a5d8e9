"""CPU per request, scenario by scenario, without gunicorn or wrk: `python -m bench.percall`.

`make bench` measures requests per second against a ceiling, which swings with whatever
else the machine runs. This counts the CPU time (time.process_time) the app itself
spends per request, which other load barely moves: each scenario's WSGI environ is built
once by werkzeug's test machinery and the app is called with a copy N times, against a
private redis-server with bench's raised limits (Redis' own CPU is not counted).
`ceiling` is bench/ceiling.py's bare Flask + PING app, measured the same way. Each
scenario also reports the redis-server's CPU per request (INFO cpu): under `make bench`
Redis runs on the same cores as the workers.

`--against DIR` runs the same scenarios on another checkout (e.g. `git archive <base>`
unpacked in DIR), alternating fresh interpreters between the two trees, and prints both
medians side by side: compare only numbers measured in the same run. `--with NAME=VALUE`
(repeatable) also measures this tree with those settings on top of bench's, in the same
alternation: e.g. `--with ORCHESTRATOR_RATE_LIMIT_EXEMPT=apikey:bench` shows what the
rate limiter costs a request.
`--profile SCENARIO` writes a cProfile of that scenario instead (bench/results/).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# By path, as this file itself is run in the tree `--against` names, which may not have it.
callgrind = runpy.run_path(str(Path(__file__).with_name("callgrind.py")))
SCENARIOS = ("create", "claim", "get", "publish", "health", "ceiling")
HERE = Path(__file__).resolve().parent.parent


def _environs(app, task_id: str) -> dict[str, tuple[dict, bytes]]:
    """Each scenario's WSGI environ (without its body stream) and its body."""
    from werkzeug.test import EnvironBuilder

    from bench.run import BENCH_KEY

    headers = {"X-API-Key": BENCH_KEY}
    create = {"type": "bugfix", "priority": "P3", "payload": {"repo": "x"}}  # as bench/run.py
    bodies = {
        "create": ("POST", "/tasks", create),
        "claim": ("POST", "/tasks/claim", {"agent": "dev_agent"}),
        "get": ("GET", f"/tasks/{task_id}", None),
        "publish": (
            "POST",
            "/events/publish",
            {"event_type": "bench.tick", "source_agent": "bench", "payload": {"n": 1}},
        ),
        "health": ("GET", "/health", None),
        "ceiling": ("GET", "/", None),
    }
    out = {}
    for name, (method, path, body) in bodies.items():
        data = json.dumps(body).encode() if body is not None else b""
        builder = EnvironBuilder(
            path=path,
            method=method,
            headers=headers if name not in ("health", "ceiling") else {},
            data=data or None,
            content_type="application/json" if data else None,
        )
        environ = builder.get_environ()
        environ.pop("wsgi.input")
        environ["wsgi.input_terminated"] = True  # as gunicorn's environ says
        out[name] = (environ, data)
    return out


def redis_cpu_seconds(client) -> float:
    """Seconds of CPU the redis-server has used (user + system), from INFO cpu."""
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def _call(app, environ: dict, body: bytes) -> str:
    status = []
    env = dict(environ)
    env["wsgi.input"] = io.BytesIO(body)
    result = app(env, lambda s, h, e=None: status.append(s))
    try:
        for _ in result:
            pass
    finally:
        if hasattr(result, "close"):
            result.close()
    return status[0]


CALLGRIND_VAR = "PERCALL_CALLGRIND_OUT"
SETTINGS_VAR = "PERCALL_SETTINGS"  # --with: JSON of the settings on top of bench's


def measure(requests: int, only: tuple[str, ...], profile: str | None) -> dict[str, float]:
    """µs of CPU per request for each scenario, in this interpreter."""
    # As gunicorn.conf.py does: metrics in multiprocess mode, chosen at first import.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="percall-metrics-")
    from app import create_app
    from app.services import services
    from bench.run import seed_tasks, service_env
    from harness import RedisServer

    redis_dir = Path(tempfile.mkdtemp(prefix="percall-redis-"))
    redis_server = RedisServer(redis_dir).start()
    try:
        env = {**service_env(redis_server.url), **json.loads(os.environ.get(SETTINGS_VAR, "{}"))}
        app = create_app(env)
        warmup = max(20, requests // 10)
        if "claim" in only:
            seed_tasks(redis_server.url, requests + warmup + 10)
        with app.app_context():
            task = services().tasks.create({"type": "faq", "priority": "P3"}, "apikey:bench")
        environs = _environs(app, task.task["task_id"])
        results = {}
        os.environ["REDIS_URL"] = redis_server.url
        from bench.ceiling import app as ceiling

        for name in only:
            environ, body = environs[name]
            target = ceiling if name == "ceiling" else app
            for _ in range(warmup):
                status = _call(target, environ, body)
            if not status.startswith("20"):
                raise SystemExit(f"{name}: {status}")
            if profile == name:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            out_file = os.environ.get(CALLGRIND_VAR)
            counter = callgrind["Callgrind"](os.getpid(), Path(out_file)) if out_file else None
            # Redis shares the machine's cores with the workers under `make bench`. Read
            # outside the counted loop: a client and INFO cost as much as many requests.
            redis_started = redis_cpu_seconds(redis_server.client())
            if counter:
                counter.start()
            started = time.process_time()
            for _ in range(requests):
                _call(target, environ, body)
            results[name] = (time.process_time() - started) / requests * 1e6
            if counter:
                results[name] = counter.stop() / requests / 1000
            redis_cpu = (redis_cpu_seconds(redis_server.client()) - redis_started) / requests * 1e6
            results[f"{name} (redis µs)"] = redis_cpu
            if profile == name:
                profiler.disable()
                dump = HERE / "bench" / "results" / f"percall-{name}.prof"
                dump.parent.mkdir(exist_ok=True)
                profiler.dump_stats(dump)
                print(f"profile: {dump}", file=sys.stderr)
        return results
    finally:
        redis_server.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def _child(tree: Path, args, settings: dict[str, str]) -> dict[str, float]:
    """One measurement in a fresh interpreter, importing the app from `tree`."""
    # The tree's app, harness and bench.run; this file loaded by path (an older tree
    # has no bench/percall.py).
    code = (
        "import json, runpy, sys; sys.path.insert(0, sys.argv[1]); "
        "measure = runpy.run_path(sys.argv[2])['measure']; "
        "print(json.dumps(measure(int(sys.argv[3]), tuple(sys.argv[4].split(',')), None)))"
    )
    command = [sys.executable, "-c", code, str(tree), __file__, str(args.requests), args.only]
    env = {**os.environ, SETTINGS_VAR: json.dumps(settings)}
    if args.callgrind:
        out_dir = Path(tempfile.mkdtemp(prefix="percall-callgrind-"))
        env[CALLGRIND_VAR] = str(out_dir / "callgrind.out")
        command = callgrind["command"](Path(env[CALLGRIND_VAR]), *command)
    try:
        out = subprocess.run(
            command, env=env, cwd=tree, capture_output=True, text=True, check=True
        ).stdout
    finally:
        if args.callgrind:
            shutil.rmtree(out_dir, ignore_errors=True)
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="per scenario and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--profile", choices=SCENARIOS, help="cProfile one scenario")
    parser.add_argument(
        "--with",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="also measure this tree with these settings (repeatable)",
    )
    parser.add_argument(
        "--callgrind", action="store_true", help="count instructions (thousands) under callgrind"
    )
    args = parser.parse_args()
    only = tuple(args.only.split(","))
    if args.profile:
        print(json.dumps(measure(args.requests, (args.profile,), args.profile)))
        return 0
    trees = {"this": (HERE, {})}
    if args.settings:
        trees["with"] = (HERE, dict(setting.split("=", 1) for setting in args.settings))
        print(f"with: {' '.join(args.settings)}")
    if args.against:
        trees["against"] = (args.against.resolve(), {})
    if not args.callgrind:  # under callgrind the slowed client inflates Redis' idle CPU
        only = (*only, *(f"{name} (redis µs)" for name in only))
    samples: dict[str, dict[str, list[float]]] = {t: {s: [] for s in only} for t in trees}
    for _ in range(args.rounds):
        for label, (tree, settings) in trees.items():  # alternating: drift hits all alike
            for name, value in _child(tree, args, settings).items():
                if name in samples[label]:  # Redis' CPU is not asked for under callgrind
                    samples[label][name].append(value)
    header = f"{'scenario':20}" + "".join(f"{label:>22}" for label in trees)
    unit = "thousand instructions" if args.callgrind else "µs of CPU"
    print(f"{unit} per request, median of {args.rounds} rounds x {args.requests}")
    others = [label for label in trees if label != "this"]
    print(header + "".join(f"{'this/' + label:>14}" for label in others))
    for name in only:
        medians = [statistics.median(samples[label][name]) for label in trees]
        spread = [
            f"{m:8.0f} ({min(samples[t][name]):.0f}-{max(samples[t][name]):.0f})"
            for m, t in zip(medians, trees, strict=True)
        ]
        line = f"{name:20}" + "".join(f"{s:>22}" for s in spread)
        line += "".join(f"{medians[0] / m:14.2f}" for m in medians[1:])
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
