"""Rebuild the task and event indexes from what is stored: the task hashes and the stream.

For a store written before the indexes existed (the release whose listings scanned), or
one whose indexes are in doubt. Three passes:

1. `through` = the stream's last id, taken first: the rebuild covers events up to it;
   the service indexes every later one itself.
2. SCAN the task hashes; per batch, `reindex_tasks` puts each task in its status and
   route (type and agent) indexes, and `reindex_events` empties its event index of the
   ids up to `through` (keeping those the service wrote since).
3. XRANGE the stream up to `through`; per batch, `reindex_events` puts each event about a
   stored task back in its task's event index, before the ids the service wrote since.

Each batch is one atomic script, so it is safe while the service runs: a task moved
meanwhile is indexed as it is when its batch runs, and an index the service appends to
stays in stream order. Run one at a time; running it again rebuilds the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import redis

from app.config import Settings
from app.domain.ids import is_task_id
from app.domain.keys import Keys
from app.domain.model import TASK_TYPES
from app.domain.scripts import Scripts

TASK_BATCH = 500
EVENT_BATCH = 1000


@dataclass(frozen=True)
class Reindexed:
    """What a rebuild did: tasks indexed, events indexed, pre-index keys deleted."""

    tasks: int
    events: int
    removed: int


def pre_index_keys(keys: Keys, agents: Iterable[str]) -> list[str]:
    """The keys of earlier layouts, which nothing reads any more.

    Every task by seq, the counts per status and the dead letters per status (before the
    indexes), and the per-type and per-agent indexes (before the route indexes, which
    hold each task once for both): named here, not in LAYOUT.
    """
    return [
        f"{keys.tag}:tasks",
        f"{keys.tag}:counts",
        f"{keys.tag}:dead:failed",
        f"{keys.tag}:dead:cancelled",
        *(f"{keys.tag}:tasks:type:{task_type}" for task_type in TASK_TYPES),
        *(f"{keys.tag}:tasks:agent:{agent}" for agent in sorted(agents)),
    ]


def task_id_batches(client: redis.Redis, keys: Keys, size: int) -> Iterator[list[str]]:
    """The ids of the stored tasks, `size` at a time (SCAN: may repeat one, never blocks)."""
    head = keys.task("")
    batch: list[str] = []
    for name in client.scan_iter(match=keys.task("*"), count=size):
        task_id = name[len(head) :]
        if is_task_id(task_id):
            batch.append(task_id)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def event_batches(
    client: redis.Redis, keys: Keys, through: str, size: int
) -> Iterator[list[tuple[str, str]]]:
    """(event_id, task_id) of the stream's events about a task, oldest first, up to `through`."""
    stream, start = keys.name("events"), "-"
    while entries := client.xrange(stream, min=start, max=through, count=size):
        yield [
            (event_id, fields["task_id"]) for event_id, fields in entries if fields.get("task_id")
        ]
        start = "(" + entries[-1][0]


def reindex(
    client: redis.Redis,
    settings: Settings,
    *,
    task_batch: int = TASK_BATCH,
    event_batch: int = EVENT_BATCH,
) -> Reindexed:
    """Rebuild every task's indexes and event index, then delete the pre-index keys."""
    keys, scripts = Keys(settings.queue_prefix), Scripts(client, settings)
    newest = client.xrevrange(keys.name("events"), count=1)
    # With no event stored there is nothing to put back, and every id is after 0-0.
    through = newest[0][0] if newest else "0-0"
    tasks = 0
    for batch in task_id_batches(client, keys, task_batch):
        tasks += scripts.reindex_tasks(task_ids=batch)["indexed"]
        scripts.reindex_events(through=through, reset=batch, entries=None)
    events = 0
    for entries in event_batches(client, keys, through, event_batch):
        if entries:
            reply = scripts.reindex_events(through=through, reset=None, entries=entries)
            events += reply["indexed"]
    # An agent with a per-agent index of the old layout had a stored task, whose route
    # the task pass has just recorded; an agent with none left has an empty index, which
    # Redis has deleted already.
    routes = client.smembers(keys.name("routes"))
    agents = {route.partition(":")[2] for route in routes}
    removed = client.delete(*pre_index_keys(keys, agents))
    return Reindexed(tasks=tasks, events=events, removed=removed)
