"""Real processes for tests and benchmarks: redis-server (alone, with sentinels, as a
cluster), the service under gunicorn, the webhook deliverer, and `make run` in a fresh
checkout."""

from harness.deliverer import Deliverer
from harness.live_server import LiveServer
from harness.make_run import MakeRun, clean_env, fresh_checkout, process_alive
from harness.processes import ROOT, free_port, wait_until
from harness.redis_server import RedisServer
from harness.redis_topologies import RedisClusterNodes, SentinelGroup

__all__ = [
    "ROOT",
    "Deliverer",
    "LiveServer",
    "MakeRun",
    "RedisClusterNodes",
    "RedisServer",
    "SentinelGroup",
    "clean_env",
    "free_port",
    "fresh_checkout",
    "process_alive",
    "wait_until",
]
