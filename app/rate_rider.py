"""A rate-limit hit that rides on the request's first script call: one round trip.

flask-limiter takes a slot from the storage (rate_storage.py) before the view runs. On
the endpoints in RIDING_ENDPOINTS, whose views reach Redis first through one domain
script and change nothing before it, the storage answers "taken" at once and leaves the
hit here. Scripts._call sends it with that script (lib.lua, ride), which takes the slot
first and, when it is refused, does nothing else: the view then answers the 429 it would
have answered before running. A view that never reaches a script (a body refused as
invalid, an empty event range) has its hit taken on its own after the view
(ratelimit.py), and a refused one turns that answer into the 429. Either way each
request is counted once, before anything it asked for changes.
"""

from __future__ import annotations

from flask import g, has_request_context, request

# Views whose first Redis call is their one domain script (app/api/tasks.py, events.py).
RIDING_ENDPOINTS = frozenset(
    {
        "tasks.create_task",
        "tasks.list_tasks",
        "tasks.claim_task",
        "tasks.get_task",
        "tasks.explain_task",
        "tasks.update_status",
        "tasks.cancel_task",
        "tasks.heartbeat",
        "tasks.retry_task",
        "tasks.redrive",
        "events.publish",
        "events.list_events",
    }
)


class RideRefused(Exception):
    """The hit a script call carried was refused, so the operation did not run."""


def note_window(record: str, window: list) -> bool:
    """Keep the window a hit read (for the X-RateLimit-* headers); False when refused.

    `window` is lib.lua's rate_window() answer; a current count of -1 means the client
    address is over its failed-authentication limit.
    """
    taken, previous, previous_ttl, current, current_ttl = window
    if not has_request_context():
        return bool(taken)
    if int(current) < 0:
        g.auth_failures_blocked = True  # read by ratelimit._breach_response
        return False
    g.setdefault("rate_windows", {})[record] = (
        int(previous),
        previous_ttl / 1000,
        int(current),
        current_ttl / 1000,
    )
    return bool(taken)


def wait_for_a_script(hit: dict) -> bool:
    """Leave `hit` for the request's first script call; False when it cannot ride."""
    if not has_request_context() or "rate_hit" in g or request.endpoint not in RIDING_ENDPOINTS:
        return False
    g.rate_hit = hit
    return True


def unused_hit() -> dict | None:
    """The hit no script call carried, once (the view answered without one)."""
    return g.pop("rate_hit", None)


def hit_lost() -> bool:
    """Whether this request's hit went with a script call that never answered (Redis
    away): there is no window to show, nor one to read."""
    return has_request_context() and "rate_hit_in_flight" in g


class RateRider:
    """app.domain.rider.Rider for the services' Scripts: hands over the waiting hit."""

    def take(self) -> dict | None:
        hit = g.pop("rate_hit", None) if has_request_context() else None
        if hit:
            g.rate_hit_in_flight = hit["record"]
        return hit

    def landed(self, hit: dict, window: list) -> None:
        g.pop("rate_hit_in_flight", None)
        if not note_window(hit["record"], window):
            raise RideRefused
