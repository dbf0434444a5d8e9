"""What each request hook costs: `python -m bench.hooks [SCENARIO ...]`.

The app's CPU per request (as bench/percall.py measures it: in-process, against a
private redis-server, Redis' own CPU not counted) with every before_request and
after_request hook in place, then with each one removed in turn, then with flask-limiter's
two removed together and with none at all; the variants alternate round by round, and
each figure is the median of the rounds. A hook's "saves" is what the request costs less
without it, in the same run.

For analysis only: a request without some hooks is not a correct request (without
flask-limiter's no limit is counted, without the request id no `X-Request-ID`), so no
variant's answer is checked beyond its status; a variant whose view fails without the
hook (publish reads the request id) is named as such, not measured.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.percall import _call, _environs

LIMITER_HOOKS = ("Limiter._check_request_limit", "Limiter.__inject_headers")


def _name(hook) -> str:
    return getattr(hook, "__qualname__", None) or hook.func.__qualname__  # a partial


def variants(app) -> dict[str, tuple[list, list]]:
    """(before_request, after_request) hook lists by variant name."""
    before, after = app.before_request_funcs[None], app.after_request_funcs[None]
    out = {"all hooks": (before, after)}
    for hook in before:
        out[f"without {_name(hook)}"] = ([h for h in before if h is not hook], after)
    for hook in after:
        out[f"without {_name(hook)}"] = (before, [h for h in after if h is not hook])
    out["without flask-limiter's two"] = (
        [h for h in before if _name(h) not in LIMITER_HOOKS],
        [h for h in after if _name(h) not in LIMITER_HOOKS],
    )
    out["without any hook"] = ([], [])
    return out


def measure(scenario: str, requests: int, rounds: int) -> dict[str, float | str]:
    """Median µs of app CPU per request of `scenario` by variant, or the failing status."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="hooks-metrics-")
    from app import create_app
    from app.services import services
    from bench.run import service_env
    from harness import RedisServer

    redis_dir = Path(tempfile.mkdtemp(prefix="hooks-redis-"))
    redis_server = RedisServer(redis_dir).start()
    try:
        app = create_app(service_env(redis_server.url))
        with app.app_context():
            task = services().tasks.create({"type": "faq", "priority": "P3"}, "apikey:bench")
        environ, body = _environs(app, task.task["task_id"])[scenario]
        hooks = variants(app)
        timings: dict[str, list[float]] = {name: [] for name in hooks}
        failed: dict[str, str] = {}
        logging.disable(logging.CRITICAL)  # the failing variants' error logs
        for _ in range(rounds):
            for name, (before, after) in hooks.items():
                if name in failed:
                    continue
                app.before_request_funcs[None], app.after_request_funcs[None] = before, after
                for _ in range(max(20, requests // 20)):  # warm-up
                    status = _call(app, environ, body)
                if not status.startswith("20"):
                    failed[name] = status
                    continue
                started = time.process_time()
                for _ in range(requests):
                    _call(app, environ, body)
                timings[name].append((time.process_time() - started) / requests * 1e6)
        return {name: failed.get(name) or statistics.median(timings[name]) for name in hooks}
    finally:
        logging.disable(logging.NOTSET)
        redis_server.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenarios", nargs="*", default=["get", "health"])
    parser.add_argument("--requests", type=int, default=2000, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for scenario in args.scenarios:
        results = measure(scenario, args.requests, args.rounds)
        whole = results["all hooks"]
        print(f"\n{scenario}: µs of app CPU per request, median of {args.rounds} rounds")
        for name, value in results.items():
            if isinstance(value, str):
                print(f"  {name:55s} the view fails without it ({value})")
                continue
            saves = "" if name == "all hooks" else f"  saves {whole - value:5.0f}"
            print(f"  {name:55s} {value:6.0f}{saves}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
