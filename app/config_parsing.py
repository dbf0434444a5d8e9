"""How each kind of setting is read from its variable and checked (see app/config.py).

A Settings field names its parser method (`kind`) and rule; SettingsParser calls that method
with the variable, the field's default and the rule, and raises ConfigError on the
first bad value, naming the variable and the fix.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping

from app import redis_urls
from app.config import ApiKey, ConfigError, Settings
from app.config_api_keys import api_keys
from app.domain import approval_policy
from app.domain.ids import AGENT_NAME, KEY_NAME
from app.domain.model import DEFAULT_ROUTES

_ORIGIN = re.compile(r"^https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?$")
_PUBLIC_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?$")
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

    def environment_names(self, name: str, default: frozenset[str]) -> frozenset[str]:
        """Environment names, normalised like a task's; blank = default, `none` = empty."""
        from app.domain.policy import normalise_environment

        if self.raw(name).lower() == "none":
            return frozenset()
        return frozenset(normalise_environment(item) for item in self.items(name)) or default

    def jwt_secret(self, name: str, _default: str, required: bool = True) -> str:
        """A signing secret; the previous one (not required) follows the same rules."""
        secret = self.raw(name)
        if not secret and not required:
            return ""
        if not secret:
            raise ConfigError(name, f"is required; {_HOW_TO_GENERATE}")
        if self.production and len(secret) < 32:
            raise ConfigError(
                name, f"must be at least 32 characters in production; {_HOW_TO_GENERATE}"
            )
        return secret

    def allow_private(self, name: str, default: bool) -> bool:
        value = self.boolean(name, default)
        if value and self.production:
            raise ConfigError(name, "is for development and tests; refused in production")
        return value

    def backoff(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        try:
            values = tuple(float(item) for item in self.items(name)) or default
        except ValueError:
            raise ConfigError(name, "must be comma-separated seconds, e.g. 5,30,120") from None
        if any(not 0 < value <= 86400 for value in values):
            raise ConfigError(name, "each delay must be between 0 and 86400 seconds")
        return values

    def public_url(self, name: str, default: str) -> str:
        url = self.raw(name).rstrip("/") or default
        if url and not _PUBLIC_URL.match(url):
            raise ConfigError(name, "must be the service's base URL, like https://api.example.com")
        return url

    def log_format(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        return self.choice(name, "console" if self.development else default, choices, "lower")

    def trusted_proxies(self, name: str, default: int) -> int:
        # A hop is trusted only when told, or on Render (RENDER=true), which puts exactly
        # one proxy in front. Trusted without a proxy, X-Forwarded-For is whatever the
        # client writes, and it could change its address on every request.
        on_render = self.raw("RENDER").lower() == "true"
        return self.integer(name, 1 if on_render else default)

    def metrics_public(self, name: str, default: bool) -> bool:
        return self.boolean(name, False if self.production else default)

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
        try:
            redis_urls.parse(url)
        except ValueError as error:
            raise ConfigError(name, str(error)) from None
        return url

    def min_replicas(self, name: str, default: int) -> int:
        value = self.integer(name, default)
        if value and self.raw("REDIS_URL").startswith("memory://"):
            raise ConfigError(name, "memory:// has no replicas; leave it 0")
        return value

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

    def approval_policy(self, name: str, default):
        text = self.raw(name)
        if not text:
            return default
        if text.startswith("@"):
            try:
                with open(text[1:], encoding="utf-8") as policy_file:
                    text = policy_file.read()
            except OSError as error:
                raise ConfigError(name, f"cannot read {text[1:]!r}: {error.strerror}") from None
        try:
            return approval_policy.parse(text, self.groups())
        except approval_policy.PolicyError as error:
            raise ConfigError(name, str(error)) from None

    def agent_caps(self, name: str, default: dict[str, int]) -> dict[str, int]:
        caps = dict(default)
        for rule in self.items(name):
            agent, _, limit = (part.strip() for part in rule.partition("="))
            # isascii: isdigit() also takes '²' and other digits int() refuses.
            digits = limit.isascii() and limit.isdigit()
            if not AGENT_NAME.fullmatch(agent) or not digits or int(limit) < 1:
                raise ConfigError(
                    name, f"{rule!r} must be agent=N with an agent name like dev_agent and N >= 1"
                )
            caps[agent] = int(limit)
        return caps

    def groups(self) -> dict[str, frozenset[str]]:
        """ORCHESTRATOR_GROUP_<NAME>=principal,...: group <name lowercased>."""
        family = "ORCHESTRATOR_GROUP_"
        groups = {}
        for variable in sorted(self.env):
            if variable.startswith(family) and variable != family and self.raw(variable):
                label = variable.removeprefix(family)
                if not KEY_NAME.fullmatch(label):
                    raise ConfigError(variable, "group names use letters, digits and _")
                groups[label.lower()] = frozenset(self.items(variable))
        return groups

    def api_keys(self, name: str, _default: tuple) -> tuple[ApiKey, ...]:
        return api_keys(self.env, name)


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True
