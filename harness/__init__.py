"""Real processes for tests and benchmarks: redis-server (alone, with sentinels, as a
cluster), the service under gunicorn, the webhook deliverer."""

from harness.deliverer import Deliverer
from harness.live_server import LiveServer
from harness.processes import ROOT, free_port, wait_until
from harness.redis_server import RedisServer
from harness.redis_topologies import RedisClusterNodes, SentinelGroup

__all__ = [
    "ROOT",
    "Deliverer",
    "LiveServer",
    "RedisClusterNodes",
    "RedisServer",
    "SentinelGroup",
    "free_port",
    "wait_until",
]
