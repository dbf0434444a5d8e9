"""Real processes for tests and benchmarks: redis-server, the service under gunicorn, and
`make run` in a fresh checkout."""

from harness.live_server import LiveServer
from harness.make_run import MakeRun, clean_env, fresh_checkout, process_alive
from harness.processes import ROOT, free_port, wait_until
from harness.redis_server import RedisServer

__all__ = [
    "ROOT",
    "LiveServer",
    "MakeRun",
    "RedisServer",
    "clean_env",
    "free_port",
    "fresh_checkout",
    "process_alive",
    "wait_until",
]
