"""Real processes for tests and benchmarks: redis-server, and the service under gunicorn."""

from harness.live_server import LiveServer
from harness.processes import ROOT, free_port, wait_until
from harness.redis_server import RedisServer

__all__ = ["ROOT", "LiveServer", "RedisServer", "free_port", "wait_until"]
