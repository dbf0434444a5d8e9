"""Gunicorn settings for the Orchestrator API: `gunicorn -c gunicorn.conf.py wsgi:app`.

Everything is driven by environment variables (see .env.example), so the same file
serves `make run`, the Docker image and Render.
"""

import gc
import glob
import os
import shutil
import sys
import tempfile
import time


def _fail(message: str) -> None:
    """Stop start-up with one line naming the variable and the fix."""
    sys.exit(f"gunicorn.conf.py: {message}")


def _positive_int(name: str, default: int) -> int:
    """Read a positive integer from the environment, or stop with a clear message."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        _fail(f"{name}={raw!r} is not a positive integer; set it to e.g. {default} or unset it")
    return value


def _available_cpus() -> int:
    """CPUs this process may really use: CPU affinity, capped by a cgroup v2 CPU quota.

    os.cpu_count() reports the host's cores inside a container, which would start far
    too many workers on a small instance (e.g. 0.5 CPU on Render's starter plan).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))  # ceil
    except (OSError, ValueError):
        pass
    return max(1, cpus)


# --- prometheus multiprocess metrics ----------------------------------------------
# /metrics must add up the counters of every worker: prometheus_client's multiprocess
# mode keeps them in files under PROMETHEUS_MULTIPROC_DIR. The library picks its mode
# once, when it is first imported, so this comes first in this file: before anything
# (the app's config check below included) can import it, in the master or a worker.
# The directory is emptied at start-up, or counters from a previous run would leak in.
# The directory this file created, remembered in the environment so that re-reading
# the config on SIGHUP neither creates a second one nor forgets to clean up the first.
_OWNED_DIR_VAR = "ORCHESTRATOR_GUNICORN_METRICS_TMPDIR"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="orchestrator-metrics-")
    os.environ[_OWNED_DIR_VAR] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


# When this instance started, for /health's uptime and /metrics: set in the master so
# every worker reports the same (kept across a SIGHUP reload, which re-reads this file).
os.environ.setdefault("ORCHESTRATOR_STARTED_AT", str(time.time()))


# --- the app's configuration, checked once in the master -----------------------------
# A bad value stops gunicorn here with the app's one line, before any worker forks.
# Left to the workers, each prints it and exits with WORKER_BOOT_ERROR, and with several
# workers gunicorn 27 can reap a second failed worker while halting and print its own
# traceback. Importing the app's modules builds nothing (no app, no pool): preload stays off.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from app.config import ConfigError, Settings  # noqa: E402

try:
    Settings.from_env()
except ConfigError as _error:
    sys.exit(f"orchestrator: configuration error: {_error}")

# --- binding -----------------------------------------------------------------------
port = _positive_int("PORT", 8000)
bind = [f"0.0.0.0:{port}"]

# --- workers -----------------------------------------------------------------------
# Sync workers: every request is short (a few Redis round trips), and all state lives
# in Redis, so any number of workers behaves as one service.
worker_class = "sync"
workers = _positive_int("WEB_CONCURRENCY", 2 * _available_cpus() + 1)

if os.environ.get("REDIS_URL", "").strip().lower().startswith("memory://"):
    # memory:// is an in-process fakeredis: each worker would get its own private
    # "Redis", and requests would see different data depending on the worker.
    if workers != 1:
        print(
            f"WARNING: REDIS_URL=memory:// keeps state inside one process; "
            f"running 1 gunicorn worker instead of {workers}. "
            f"Use a real Redis to run several workers.",
            file=sys.stderr,
            flush=True,
        )
    workers = 1

# Each worker builds its own Redis connection pool after fork. With preload_app the
# app (and any pool or socket created at import time) would be built once in the
# master and shared by every forked worker, which corrupts Redis connections.
preload_app = False

timeout = 30  # a worker silent this long is killed and replaced
graceful_timeout = 30  # on SIGTERM, in-flight requests get this long to finish
keepalive = 5  # seconds to hold an idle keep-alive connection

# Heartbeat files on tmpfs: on a container's overlay filesystem a slow disk can stall
# workers long enough for the master to think they hung. gunicorn creates and unlinks
# its own files there (mkstemp), so a shared directory is safe.
_SHM = "/dev/shm"  # noqa: S108
if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK):
    worker_tmp_dir = _SHM

# --- proxies -----------------------------------------------------------------------
# Which peers gunicorn trusts for X-Forwarded-Proto and friends. Never "*": that would
# let any client claim to be behind HTTPS. The client IP used for rate limiting is
# resolved by the app itself (werkzeug ProxyFix, ORCHESTRATOR_TRUSTED_PROXIES hops).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# --- security limits (gunicorn defaults, stated explicitly) --------------------------
limit_request_line = 4094  # longer request lines get 400/414 from gunicorn itself
limit_request_fields = 100
limit_request_field_size = 8190

# --- logging -----------------------------------------------------------------------
accesslog = "-"
# JSON lines: one access line per request with method, path, status, duration, principal
# and request id (app/observability.py). It never writes headers, so no credential (nor
# the Basic-auth user name gunicorn's default format would log) reaches the log.
logger_class = "app.observability.GunicornLogger"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "INFO").strip().lower() or "info"
if loglevel not in {"debug", "info", "warning", "error", "critical"}:
    _fail(f"LOG_LEVEL={loglevel!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
proc_name = "orchestrator-api"

# gunicorn >= 25 opens a control socket at a fixed per-user path ($HOME/.gunicorn/...),
# which several instances on one machine (tests, make run) would fight over. Opt in by
# setting GUNICORN_CONTROL_SOCKET to a path.
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "").strip()
if _control_socket:
    control_socket = _control_socket
else:
    control_socket_disable = True


def on_starting(server):
    """Empty the metrics directory before the first worker starts."""
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    # Only prometheus_client's own files: the directory may have been set by hand.
    for path in glob.glob(os.path.join(metrics_dir, "*.db")):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    server.log.info("Prometheus multiprocess dir: %s", metrics_dir)


def post_worker_init(worker):
    """Take what the app built at start-up out of the garbage collector's full passes.

    A worker holds ~90,000 long-lived objects (Flask, marshmallow, apispec, the
    schemas). CPython's full collection walks every one of them, 30-50 ms on this class
    of machine, and requests that hold many objects at once (a page of 100 tasks) set
    one off now and then: that pause was a listing's p99. Frozen objects are never
    walked again; what requests allocate is still collected as before.
    """
    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    """Drop a dead worker's live gauges from /metrics."""
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory if this config created it."""
    owned = os.environ.get(_OWNED_DIR_VAR)
    if owned and owned == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(owned, ignore_errors=True)
