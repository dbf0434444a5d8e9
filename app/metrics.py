"""Prometheus metrics: counters the app records and gauges read from Redis at scrape time.

Under gunicorn every worker writes its samples to PROMETHEUS_MULTIPROC_DIR (set and
emptied per run by gunicorn.conf.py) and /metrics adds them up, so the numbers are
the service's, not one worker's.
"""

from __future__ import annotations

import hmac
import os
import time

from flask import Flask, g, request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter(
    "orchestrator_http_requests_total", "HTTP requests", ["method", "endpoint", "status"]
)
LATENCY = Histogram(
    "orchestrator_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
AUTH_FAILURES = Counter("orchestrator_auth_failures_total", "Rejected credentials", ["reason"])
RATE_LIMITED = Counter(
    "orchestrator_rate_limited_total", "Requests refused with 429", ["blueprint"]
)
AUTH_FAILURE_LIMITED = Counter(
    "orchestrator_auth_failure_limited_total",
    "Requests refused because their address had too many failed authentications",
)
TASKS_CREATED = Counter("orchestrator_tasks_created_total", "Tasks created", ["type", "priority"])
TRANSITIONS = Counter(
    "orchestrator_task_transitions_total", "Task state changes made through the API", ["status"]
)
APPROVALS_DECIDED = Counter(
    "orchestrator_approvals_decided_total", "Approval decisions", ["outcome"]
)


# Label values come from closed sets only: a client picks the method and the path, and
# every distinct label value is a new series kept forever (and in every worker's file).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_children: dict[tuple, object] = {}

# When this instance started: gunicorn.conf.py records it in the master, so every worker
# reports the same; without gunicorn, when this module was first imported.
STARTED_VAR = "ORCHESTRATOR_STARTED_AT"
START_TIME = float(os.environ.get(STARTED_VAR) or time.time())


def uptime_seconds() -> float:
    """Seconds since this instance started."""
    return round(time.time() - START_TIME, 3)


def _child(metric, *labels: str):
    """metric.labels(*labels), cached: labels() validates and locks on every call."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def auth_failure(reason: str) -> None:
    """Count a refused credential by reason."""
    _child(AUTH_FAILURES, reason).inc()


def rate_limited(blueprint: str | None) -> None:
    """Count a 429 by blueprint."""
    _child(RATE_LIMITED, blueprint or "default").inc()


def auth_failure_limited() -> None:
    """Count a request refused for its address' failed authentications."""
    AUTH_FAILURE_LIMITED.inc()


def task_created(task: dict) -> None:
    """Count a created task by type and priority, and its first state."""
    _child(TASKS_CREATED, task["type"], task["priority"]).inc()
    _child(TRANSITIONS, task["status"]).inc()


def task_moved(status: str) -> None:
    """Count a state change the API made."""
    _child(TRANSITIONS, status).inc()


def approval_decided(outcome: str) -> None:
    """Count an approval decision by outcome."""
    _child(APPROVALS_DECIDED, outcome).inc()


class RedisGauges:
    """Queue depth per agent, running tasks and pending approvals, read when scraped."""

    def __init__(self, read_stats, release: str = ""):
        self.read_stats = read_stats
        self.release = release

    def collect(self):
        """Read the counters from Redis now; redis_up 0 when it does not answer."""
        from app import __version__

        info = InfoMetricFamily("orchestrator_build", "Version and release of this service")
        info.add_metric([], {"version": __version__, "release": self.release or __version__})
        yield info
        yield GaugeMetricFamily(
            "orchestrator_start_time_seconds",
            "When this instance started (Unix time)",
            value=START_TIME,
        )
        up = GaugeMetricFamily("orchestrator_redis_up", "1 when Redis answered the scrape")
        try:
            stats = self.read_stats()
        except Exception:  # noqa: BLE001 - a scrape must still answer when Redis is down
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "orchestrator_queue_depth", "Ready tasks per agent", labels=["agent"]
        )
        for agent, queued in stats["agents"].items():
            depth.add_metric([agent], queued)
        yield depth
        yield GaugeMetricFamily(
            "orchestrator_tasks_in_progress",
            "Tasks running now",
            value=stats["queue"]["in_progress"],
        )
        yield GaugeMetricFamily(
            "orchestrator_approvals_pending",
            "Approvals waiting",
            value=stats["approvals"]["pending"],
        )
        for state, meaning in (("scheduled", "their run time"), ("blocked", "dependencies")):
            yield GaugeMetricFamily(
                f"orchestrator_tasks_{state}",
                f"Tasks waiting for {meaning}",
                value=stats["queue"][state],
            )
        tasks = GaugeMetricFamily("orchestrator_tasks", "Stored tasks by status", labels=["status"])
        for status, count in stats["tasks"].items():
            tasks.add_metric([status], count)
        yield tasks
        memory = stats["memory"]
        yield GaugeMetricFamily(
            "orchestrator_redis_memory_used_bytes", "Redis used_memory", value=memory["used_bytes"]
        )
        yield GaugeMetricFamily(
            "orchestrator_redis_memory_max_bytes",
            "Redis maxmemory (0: no limit)",
            value=memory["max_bytes"],
        )
        yield from _webhook_gauges(stats.get("webhooks") or {})
        yield from self.on_call(stats)

    @staticmethod
    def on_call(stats: dict):
        """What an on-call alert needs: waiting ages and lease expiries."""
        oldest = GaugeMetricFamily(
            "orchestrator_queue_oldest_age_seconds",
            "Age of the oldest ready task per agent queue (0 when empty)",
            labels=["agent"],
        )
        for agent in stats["agents"]:
            oldest.add_metric([agent], stats["oldest_waiting_seconds"].get(agent) or 0)
        yield oldest
        yield GaugeMetricFamily(
            "orchestrator_approval_oldest_age_seconds",
            "Age of the oldest pending approval (0 when none)",
            value=stats["oldest_approval_seconds"] or 0,
        )
        yield CounterMetricFamily(
            "orchestrator_lease_expiries",
            "Leases that ran out (the task was requeued, or failed past max_retries)",
            value=stats["lease_expiries"],
        )


# Gauges of the deliverers' backlog (totals are counters kept in Redis).
WEBHOOK_GAUGES = {
    "lag": ("orchestrator_webhook_consumer_lag", "Events the deliverers have not read yet"),
    "unacknowledged": (
        "orchestrator_webhook_unacknowledged",
        "Events read by a deliverer but not fanned out yet",
    ),
    "pending_deliveries": ("orchestrator_webhook_deliveries_pending", "Deliveries not done yet"),
    "delivered": ("orchestrator_webhook_delivered_total", "Deliveries a receiver accepted"),
    "dead": ("orchestrator_webhook_dead_total", "Deliveries given up after the max age"),
    "attempts": ("orchestrator_webhook_attempts_total", "Delivery attempts started"),
}


def _webhook_gauges(health: dict):
    for field, (name, documentation) in WEBHOOK_GAUGES.items():
        if health.get(field) is not None:
            yield GaugeMetricFamily(name, documentation, value=health[field])


def render_metrics(read_stats, release: str = "") -> bytes:
    """The exposition text: every worker's counters (or this process's) and Redis gauges."""
    gauges = CollectorRegistry()
    gauges.register(RedisGauges(read_stats, release))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counters = CollectorRegistry()
        MultiProcessCollector(counters)
        # process_* of the worker answering: the multiprocess files hold no process data.
        ProcessCollector(registry=gauges)
    else:
        counters = REGISTRY
    return generate_latest(counters) + generate_latest(gauges)


def token_matches(presented_header: str, token: str) -> bool:
    """ORCHESTRATOR_METRICS_TOKEN check, in constant time."""
    presented = presented_header[7:] if presented_header.lower().startswith("bearer ") else ""
    return hmac.compare_digest(presented.encode(), token.encode())


def init_app(app: Flask, _settings=None) -> None:
    """Count and time every request by endpoint template and status."""

    @app.after_request
    def record(response):
        rule, method = request.url_rule, request.method  # each read goes through Flask's context
        endpoint = rule.rule if rule else "unmatched"
        method = method if method in KNOWN_METHODS else "other"
        _child(REQUESTS, method, endpoint, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            _child(LATENCY, method, endpoint).observe(time.perf_counter() - started)
        return response
