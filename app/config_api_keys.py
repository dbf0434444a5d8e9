"""API keys from ORCHESTRATOR_API_KEYS and ORCHESTRATOR_API_KEY_<NAME>: key, role, scope.

`key` (role agent) or `key:role`; a named key may add `:agent1+agent2` after role agent
to act only for those agents. The principal is `apikey:<name lowercased>`, or a short
hash of the key for unnamed ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from app.config import ApiKey, ConfigError
from app.domain.ids import AGENT_NAME, KEY_NAME
from app.domain.model import ROLES


def _items(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


def api_keys(env: Mapping[str, str], name: str) -> tuple[ApiKey, ...]:
    """Every configured key, checked; ConfigError names the variable at fault."""
    keys: list[ApiKey] = []

    def add(variable: str, key: str, role: str, label: str | None) -> None:
        # One key with two roles (or two principals) would make the caller ambiguous.
        if any(known.key == key for known in keys):
            raise ConfigError(variable, "repeats a key configured elsewhere; keys must differ")
        keys.append(_api_key(variable, key, role, label))

    for entry in _items(env, name):
        key, sep, role = entry.partition(":")
        # `key:` (a colon and no role) is a typo, not a request for the default role.
        add(name, key, role if sep else "agent", None)
    family = "ORCHESTRATOR_API_KEY_"
    for variable in sorted(env):
        # An empty value is unset: a dashboard may pass a blank secret it prompted for.
        if variable.startswith(family) and variable != family and env[variable].strip():
            label = variable.removeprefix(family)
            key, sep, role = env[variable].strip().partition(":")
            if not sep or not KEY_NAME.fullmatch(label):
                raise ConfigError(
                    variable,
                    "must be 'key:role' (role user, agent or admin), "
                    "optionally ':agent1+agent2' to scope it to those agents",
                )
            add(variable, key, role, label.lower())
    return tuple(keys)


def _api_key(variable: str, key: str, role: str, name: str | None) -> ApiKey:
    role, _, scope = role.partition(":")
    agents = frozenset(a.strip() for a in scope.split("+") if a.strip())
    if scope and (role != "agent" or not agents or not all(map(AGENT_NAME.fullmatch, agents))):
        raise ConfigError(variable, "a scope follows role agent: 'key:agent:dev_agent+ops_agent'")
    if len(key) < 16 or any(c.isspace() or c in ",:" for c in key):
        raise ConfigError(
            variable, "each key must be at least 16 characters without spaces, ',' or ':'"
        )
    if role not in ROLES:
        raise ConfigError(variable, f"unknown role {role!r}; use user, agent or admin")
    # Unnamed keys get a short, non-reversible id so logs can tell them apart.
    label = name or hashlib.sha256(key.encode()).hexdigest()[:12]
    return ApiKey(key=key, role=role, principal=f"apikey:{label}", agents=agents)
