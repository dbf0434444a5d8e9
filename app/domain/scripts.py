"""Named Lua scripts: each file in lua/ is one atomic operation, run with the shared prelude."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import redis

from app.config import Settings

LUA_DIR = Path(__file__).with_name("lua")
NAMES = (
    "create_task",
    "get_task",
    "list_tasks",
    "claim_task",
    "heartbeat_task",
    "set_task_status",
    "decide_approval",
    "read_approvals",
    "read_stats",
    "sweep",
    "publish_event",
    "read_events",
)


@cache
def source(name: str) -> str:
    """The full text of a script: the prelude then the script's own body."""
    prelude = (LUA_DIR / "lib.lua").read_text()
    return prelude + "\n" + (LUA_DIR / f"{name}.lua").read_text()


class Scripts:
    """The scripts registered on one Redis client, each called with prefix and settings."""

    def __init__(self, client: redis.Redis, settings: Settings):
        self._scripts = {name: client.register_script(source(name)) for name in NAMES}
        self._common = [
            settings.queue_prefix,
            json.dumps(
                {
                    "task_ttl": settings.task_ttl,
                    "approval_timeout": settings.approval_timeout,
                    "history_ttl": settings.approval_history_ttl,
                    "max_history": settings.max_approval_history,
                    "maxlen": settings.event_stream_maxlen,
                }
            ),
        ]

    def run(self, name: str, *args, client=None):
        """Run script `name` in one round trip (EVALSHA; loaded on first NOSCRIPT)."""
        return self._scripts[name](keys=[], args=[*self._common, *args], client=client)
