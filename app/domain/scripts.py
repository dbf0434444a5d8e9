"""The Lua scripts, one typed method each: every file in lua/ is one atomic operation.

One calling convention for all of them: KEYS[1] is the `{<prefix>}` hash tag (it routes
the call on a Redis Cluster; no script reads it), ARGV[1] is the key prefix, ARGV[2] the
call's named arguments as one JSON object (the prelude decodes it into `A`). The
deployment's settings, the same for every call of a Scripts, are written into each
script's text as CFG (lua_source.py). Every script answers one JSON object with an
`outcome` ("ok", "not_found", "conflict", ...), decoded here and only here.
"""

from __future__ import annotations

import json
import uuid
from typing import Literal

import orjson
import redis

from app.config import Settings
from app.domain import keys
from app.domain.lua_source import NAMES, SENT_ONCE, WRITES, source
from app.domain.rider import Rider
from app.domain.webhook_scripts import WebhookScripts
from app.errors import MAYBE_APPLIED, UNCONFIRMED, Unavailable


def named_arguments(name: str, given: dict) -> dict:
    """A call's arguments as the script reads them (A): no None (cjson.null is truthy in
    Lua, nil is not), and a per-call id for a write that must run once (lib.lua, once)."""
    named = {k: v for k, v in given.items() if k != "self" and v is not None}
    if name in SENT_ONCE:
        named["call"] = uuid.uuid4().hex
    return named


def rows(value) -> list:
    """A list a script answered: cjson writes an empty Lua table as {} (fakeredis as [])."""
    return value or []


class Scripts(WebhookScripts):
    """The scripts registered on one Redis client; see each lua/<name>.lua for its contract."""

    def __init__(self, client: redis.Redis, settings: Settings, rider: Rider | None = None):
        self._client = client
        self._rider = rider
        settings_cfg = {
            "task_ttl": settings.task_ttl,
            "approval_timeout": settings.approval_timeout,
            "history_ttl": settings.approval_history_ttl,
            "max_history": settings.max_approval_history,
            "maxlen": settings.event_stream_maxlen,
            "lease_ms": settings.lease_seconds * 1000,
            "memory_high_watermark": settings.redis_memory_high_watermark,
            "webhook_max_age_ms": settings.webhook_max_age * 1000,
            # ORCHESTRATOR_AGENT_CONCURRENCY: leases an agent may hold at once (claim and
            # PATCH to in_progress both check it).
            "agent_caps": dict(settings.agent_concurrency),
        }
        self._scripts = {name: client.register_script(source(name, settings_cfg)) for name in NAMES}
        self._route = [keys.hash_tag(settings.queue_prefix)]
        self._replicas = settings.redis_min_replicas
        # WAIT gives up well before the socket would (a quarter of the timeout, for a
        # loaded machine), so "not confirmed" is a clean 503 on a connection that stays
        # usable rather than a socket timeout that drops it.
        self._wait_ms = max(1, int(settings.health_check_timeout * 750))
        self._prefix = settings.queue_prefix

    def names_by_sha(self) -> dict[str, str]:
        """Each registered script's name by its SHA1, as EVALSHA and SLOWLOG name it."""
        return {script.sha: name for name, script in self._scripts.items()}

    def _call(self, name: str, args: dict) -> dict:
        """Run one script in one round trip (EVALSHA; loaded on first NOSCRIPT), with the
        request's rate-limit hit when one waits (lib.lua, ride: taken first). `args` is
        the calling method's locals(): its keyword parameters are the script's argument
        names (A.<name>), so each name is written once."""
        named = named_arguments(name, args)
        if hit := self._rider.take() if self._rider else None:
            named["rate"] = hit
        argv = [self._prefix, json.dumps(named, ensure_ascii=False)]
        # Replies are cjson's: shallow objects (stored JSON comes back as strings), no
        # integer past 14 digits. orjson reads them into the same values, faster.
        try:
            if self._replicas and name in WRITES:
                reply = self._confirmed(self._scripts[name], argv)
            else:
                reply = self._scripts[name](keys=self._route, args=argv)
        except redis.TimeoutError as error:
            if name in WRITES:
                raise Unavailable(MAYBE_APPLIED, headers={"Retry-After": "5"}) from error
            raise
        if hit:
            reply, *window = reply
            self._rider.landed(hit, window)  # raises when the hit was refused
        return orjson.loads(reply)

    def queue(self, pipe: redis.client.Pipeline, name: str, **named) -> None:
        """Queue one script call on `pipe` (bulk loading, e.g. `make bench-scale`): the
        same arguments as the typed method of that name, the reply JSON in pipe.execute()."""
        argv = [self._prefix, json.dumps(named_arguments(name, named))]
        self._scripts[name](keys=self._route, args=argv, client=pipe)

    def _confirmed(self, script, argv: list) -> str | list:
        """Run a write script, then WAIT on the same connection for the replicas.

        WAIT counts the replicas that have this connection's last write, so both go in
        one pipeline; on a cluster, through the client of the node holding the slot.
        """
        node = self._client
        if hasattr(node, "get_node_from_key"):  # a cluster: the node that holds the slot
            node = node.get_redis_connection(node.get_node_from_key(self._route[0]))
        for _attempt in range(2):
            with node.pipeline(transaction=False) as pipe:
                pipe.evalsha(script.sha, 1, *self._route, *argv)
                pipe.execute_command("WAIT", self._replicas, self._wait_ms)
                reply, confirmed = pipe.execute(raise_on_error=False)
            if not isinstance(reply, redis.exceptions.NoScriptError):
                break
            node.script_load(script.script)  # a new primary has an empty script cache
        if isinstance(reply, Exception):
            raise reply
        if isinstance(confirmed, Exception) or int(confirmed) < self._replicas:
            raise Unavailable(UNCONFIRMED, headers={"Retry-After": "1"})
        return reply

    # Tasks ---------------------------------------------------------------------------

    def create_task(
        self,
        *,
        task: dict[str, str],
        approval: dict | None,
        idempotency_key: str | None,
        fingerprint: str | None,
        sla_target_ms: int | None,
        run_at_ms: int | None,
        delay_ms: int | None,
        depends_on: list[str] | None,
    ) -> dict:
        """Store, route, maybe block, gate or schedule a new task.

        created / replay (task), mismatch, or invalid (field, message).
        """
        return self._call("create_task", locals())

    def get_task(self, *, task_id: str) -> dict:
        """One task as of now: ok (task) or not_found."""
        return self._call("get_task", locals())

    def list_tasks(
        self,
        *,
        after_seq: str | None,
        limit: int,
        status: str | None,
        task_type: str | None,
        assigned_to: str | None,
        scan_budget: int,
    ) -> dict:
        """One page newest first: ok (tasks, next_seq when there may be more)."""
        return self._call("list_tasks", locals())

    def claim_task(self, *, agent: str, lease_ms: int, principal: str) -> dict:
        """The agent's best ready task, leased to the principal: ok (task), empty, capped."""
        return self._call("claim_task", locals())

    def heartbeat_task(
        self, *, task_id: str, principal: str, lease_ms: int | None, lease_token: int | None
    ) -> dict:
        """Extend a held lease: ok (task), not_found, conflict, forbidden or lease_lost."""
        return self._call("heartbeat_task", locals())

    def set_task_status(
        self,
        *,
        task_id: str,
        status: str,
        principal: str,
        error: str | None,
        for_any_holder: bool,
        agents: list[str] | None,
        lease_token: int | None,
    ) -> dict:
        """One client move: ok (task), not_found, conflict, forbidden, out_of_scope, lease_lost."""
        return self._call("set_task_status", locals())

    def explain_task(self, *, task_id: str) -> dict:
        """Why a task is where it is: ok (task, approval?, queue_rank?, queued?, now)."""
        return self._call("explain_task", locals())

    def retry_task(self, *, task_id: str) -> dict:
        """A dead letter back to its queue, or its waits: ok (task), not_found, conflict,
        not_approved, dependency_ended."""
        return self._call("retry_task", locals())

    def redrive_tasks(
        self,
        *,
        status: str,
        task_type: str | None,
        assigned_to: str | None,
        limit: int,
        scan_budget: int,
    ) -> dict:
        """Retry the matching dead letters, oldest first: ok (task_ids)."""
        return self._call("redrive_tasks", locals())

    def sweep(self, *, budget: int) -> dict:
        """Apply what fell due, `budget` per kind: ok (still_due)."""
        return self._call("sweep", locals())

    def read_stats(self, *, settle_budget: int) -> dict:
        """Every counter: ok (counts, totals, agents, oldest, oldest_approval, ..., now)."""
        return self._call("read_stats", locals())

    def list_agents(self, *, routed: list[str], settle_budget: int) -> dict:
        """Every agent with its work: ok (agents)."""
        return self._call("list_agents", locals())

    # Approvals -----------------------------------------------------------------------

    def get_approval(self, *, approval_id: str) -> dict:
        """One approval as of now: ok (approval) or not_found."""
        return self._call("get_approval", locals())

    def list_approvals(self, *, view: Literal["pending", "history"], limit: int) -> dict:
        """Pending (oldest first) or decided (newest first) approvals: ok (approvals)."""
        return self._call("list_approvals", locals())

    def decide_approval(
        self,
        *,
        approval_id: str,
        decision: Literal["approved", "rejected"],
        principal: str,
        role: str,
        groups: list[str],
        decider_identities: list[str],
        act: list[str] | None,
        reason: str | None,
        comment: str | None,
        payload: str | None,
        payload_sha256: str | None,
        payload_keys: dict[str, str] | None,
        expected_sha256: str | None,
    ) -> dict:
        """One decision: ok (approval, task), not_found, conflict, forbidden or reason."""
        return self._call("decide_approval", locals())

    # Events --------------------------------------------------------------------------

    def publish_event(
        self, *, event_type: str, source_agent: str, task_id: str | None, data: str
    ) -> dict:
        """Store and fan out a client's event: ok (event_id, timestamp)."""
        return self._call("publish_event", locals())

    def read_events(
        self,
        *,
        order: Literal["asc", "desc"],
        start: str | None,
        stop: str | None,
        limit: int,
        event_type: str | None,
        task_id: str | None,
        source_agent: str | None,
        scan_budget: int,
    ) -> dict:
        """One filtered page of the stream: ok (events, cursor when there is one)."""
        return self._call("read_events", locals())

    def count_auth_failure(self, *, address: str, window: int) -> dict:
        """One failed authentication from `address`: ok (failures, ttl)."""
        return self._call("count_auth_failure", locals())

    # Reindexing (the `reindex` command; see reindex.py) -------------------------------

    def reindex_tasks(self, *, task_ids: list[str]) -> dict:
        """File stored tasks in their status, type and agent indexes: ok (indexed)."""
        return self._call("reindex_tasks", locals())

    def reindex_events(
        self,
        *,
        through: str,
        reset: list[str] | None,
        entries: list[tuple[str, str]] | None,
    ) -> dict:
        """Empty tasks' event indexes up to `through`, or refill them: ok (indexed)."""
        return self._call("reindex_events", locals())
