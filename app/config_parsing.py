"""How each kind of setting is read from its variable and checked (see app/config.py).

A Settings field names its parser method (`kind`) and rule; SettingsParser calls that method
with the variable, the field's default and the rule, and raises ConfigError on the
first bad value, naming the variable and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Mapping

from app.config import ApiKey, ConfigError, Settings
from app.domain.ids import AGENT_NAME, KEY_NAME
from app.domain.model import DEFAULT_ROUTES, ROLES

REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "memory://")
_ORIGIN = re.compile(r"^https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HOW_TO_GENERATE = (
    "set it in .env or the environment (`make run` writes a .env with one); generate one with"
    " `flask --app wsgi gen-secret`"
)


class SettingsParser:
    """Reads each Settings field with the parser method its declaration names."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.production = False
        self.development = False

    def settings(self) -> Settings:
        values = {}
        for spec in dataclasses.fields(Settings):  # ENVIRONMENT first: rules depend on it
            meta = dict(spec.metadata)
            variable, kind = meta.pop("env"), meta.pop("kind")
            default = spec.default if spec.default is not dataclasses.MISSING else None
            if default is None:
                default = spec.default_factory()
            values[spec.name] = getattr(self, kind)(variable, default, **meta)
            if spec.name == "environment":
                self.production = values["environment"] == "production"
                self.development = values["environment"] == "development"
        return Settings(**values)

    def raw(self, name: str) -> str:
        return self.env.get(name, "").strip()

    def items(self, name: str) -> list[str]:
        return [item.strip() for item in self.raw(name).split(",") if item.strip()]

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        text = self.raw(name) or str(default)
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(name, f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise ConfigError(name, f"must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        text = self.raw(name) or str(default)
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(name, f"must be a number, got {text!r}") from None
        if not low <= value <= high:
            raise ConfigError(name, f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        text = self.raw(name).lower()
        if not text:
            return default
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"must be true or false, got {text!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...], fold: str = "") -> str:
        value = self.raw(name) or default
        value = getattr(value, fold)() if fold else value  # "upper" / "lower": any case
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}")
        return value

    def subset(self, name: str, default: frozenset[str], choices: tuple[str, ...]):
        """A comma-separated set; blank means the default and `none` the empty set.

        Blank is the default, as for every other variable: a variable declared but left
        empty on a dashboard must not silently switch off an approval gate.
        """
        if self.raw(name).lower() == "none":
            return frozenset()
        values = frozenset(self.items(name)) or default
        if not values <= set(choices):
            raise ConfigError(name, f"list values among {','.join(choices)}, or none")
        return values

    def jwt_secret(self, name: str, _default: str) -> str:
        secret = self.raw(name)
        if not secret:
            raise ConfigError(name, f"is required; {_HOW_TO_GENERATE}")
        if self.production and len(secret) < 32:
            raise ConfigError(
                name, f"must be at least 32 characters in production; {_HOW_TO_GENERATE}"
            )
        return secret

    def log_format(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        return self.choice(name, "console" if self.development else default, choices, "lower")

    def trusted_proxies(self, name: str, default: int) -> int:
        return self.integer(name, 1 if self.production else default)

    def release(self, name: str, default: str) -> str:
        return self.raw(name) or self.raw("RENDER_GIT_COMMIT")[:12] or default

    def queue_prefix(self, name: str, default: str) -> str:
        prefix = self.raw(name) or default
        if not _PREFIX.match(prefix):
            raise ConfigError(name, "use 1-64 letters, digits, _ . -")
        return prefix

    def redis_url(self, name: str, default: str) -> str:
        url = self.raw(name)
        if not url:
            if self.production:
                raise ConfigError(name, "is required in production (rediss://...)")
            return default
        if url.startswith("memory://") and self.production:
            raise ConfigError(name, "memory:// is a single-process demo, not production")
        if not url.startswith(REDIS_SCHEMES) or url in REDIS_SCHEMES[:3]:
            raise ConfigError(name, "must start with redis://, rediss:// or unix://")
        return url

    def cors_origins(self, name: str, _default: tuple) -> tuple[str, ...]:
        origins = self.items(name)
        for origin in origins:
            if origin == "*":
                if self.production:
                    raise ConfigError(name, "'*' is refused in production; list origins")
            elif not _ORIGIN.match(origin):
                raise ConfigError(
                    name,
                    f"{origin!r} is not an origin like https://app.example.com "
                    "or https://*.example.com",
                )
        return tuple(origins)

    def exempt_principals(self, name: str, _default) -> frozenset[str]:
        return frozenset(e for e in self.items(name) if ":" in e and not _is_network(e))

    def exempt_networks(self, name: str, _default) -> tuple:
        networks = []
        for entry in self.items(name):
            if ":" in entry and not _is_network(entry):
                continue  # a principal
            if not _is_network(entry):
                raise ConfigError(
                    name, f"{entry!r} is neither a principal (apikey:ops) nor a CIDR range"
                )
            networks.append(ipaddress.ip_network(entry, strict=False))
        return tuple(networks)

    def routes(self, name: str, default: dict[str, str]) -> dict[str, str]:
        routes = dict(default)
        for rule in self.items(name):
            task_type, _, agent = (part.strip() for part in rule.partition("="))
            if task_type not in DEFAULT_ROUTES or not AGENT_NAME.fullmatch(agent):
                raise ConfigError(
                    name,
                    f"{rule!r} must be type=agent with a known task type and an agent "
                    "name like ops_agent",
                )
            routes[task_type] = agent
        return routes

    def api_keys(self, name: str, _default: tuple) -> tuple[ApiKey, ...]:
        keys: list[ApiKey] = []

        def add(variable: str, key: str, role: str, label: str | None) -> None:
            # One key with two roles (or two principals) would make the caller ambiguous.
            if any(known.key == key for known in keys):
                raise ConfigError(variable, "repeats a key configured elsewhere; keys must differ")
            keys.append(_api_key(variable, key, role, label))

        for entry in self.items(name):
            key, sep, role = entry.partition(":")
            # `key:` (a colon and no role) is a typo, not a request for the default role.
            add(name, key, role if sep else "agent", None)
        family = "ORCHESTRATOR_API_KEY_"
        for variable in sorted(self.env):
            # An empty value is unset: a dashboard may pass a blank secret it prompted for.
            if variable.startswith(family) and variable != family and self.raw(variable):
                label = variable.removeprefix(family)
                key, sep, role = self.raw(variable).rpartition(":")
                if not sep or not KEY_NAME.fullmatch(label):
                    raise ConfigError(variable, "must be 'key:role' with role user, agent or admin")
                add(variable, key, role, label.lower())
        return tuple(keys)


def _api_key(variable: str, key: str, role: str, name: str | None) -> ApiKey:
    if len(key) < 16 or any(c.isspace() or c in ",:" for c in key):
        raise ConfigError(
            variable, "each key must be at least 16 characters without spaces, ',' or ':'"
        )
    if role not in ROLES:
        raise ConfigError(variable, f"unknown role {role!r}; use user, agent or admin")
    # Unnamed keys get a short, non-reversible id so logs can tell them apart.
    label = name or hashlib.sha256(key.encode()).hexdigest()[:12]
    return ApiKey(key=key, role=role, principal=f"apikey:{label}")


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True
