"""Real processes for tests and benchmarks: redis-server, the service under gunicorn, the
webhook deliverer."""

from harness.deliverer import Deliverer
from harness.live_server import LiveServer
from harness.processes import ROOT, free_port, wait_until
from harness.redis_server import RedisServer

__all__ = ["ROOT", "Deliverer", "LiveServer", "RedisServer", "free_port", "wait_until"]
