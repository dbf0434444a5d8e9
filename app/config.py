"""Typed settings: every environment variable is parsed and validated once, here."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

ENVIRONMENTS = ("development", "staging", "production", "testing")
ROLES = ("user", "agent", "admin")

# SPEC §4: the built-in routing table.
DEFAULT_ROUTES = {
    **dict.fromkeys(("bugfix", "feature", "refactor", "investigate"), "dev_agent"),
    **dict.fromkeys(
        ("deploy", "deployment", "monitor", "monitoring", "alert", "incident"), "ops_agent"
    ),
    **dict.fromkeys(
        ("faq", "faq_update", "kb_update", "documentation", "knowledge_sync"), "faq_agent"
    ),
}

_ORIGIN = re.compile(r"^https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_AGENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ConfigError(Exception):
    """A variable has a bad value; the message names it and says how to fix it."""

    def __init__(self, variable: str, fix: str):
        super().__init__(f"{variable}: {fix}")
        self.variable = variable


@dataclass(frozen=True)
class ApiKey:
    """One configured API key: the secret, its role and the principal it names."""

    key: str = field(repr=False)
    role: str
    principal: str


@dataclass(frozen=True)
class Settings:
    """Every setting of SPEC §2 (and the few extras the issues add), typed."""

    jwt_secret: str = field(repr=False)
    jwt_secret_previous: str = field(default="", repr=False)
    api_keys: tuple[ApiKey, ...] = ()
    redis_url: str = "redis://localhost:6379/0"
    redis_tls_verify: bool = True
    cors_origins: tuple[str, ...] = ()
    rate_limit_tasks: int = 10
    rate_limit_events: int = 20
    rate_limit_approvals: int = 5
    rate_limit_stats: int = 30
    rate_limit_default: int = 60
    rate_limit_exempt_principals: frozenset[str] = frozenset()
    rate_limit_exempt_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    trusted_proxies: int = 0
    environment: str = "development"
    log_level: str = "INFO"
    health_check_timeout: float = 5.0
    queue_prefix: str = "orchestrator"
    task_ttl: int = 86400
    approval_timeout: int = 86400
    approval_history_ttl: int = 2592000
    max_approval_history: int = 1000
    jwt_expires: int = 3600
    lease_seconds: int = 300
    event_stream_maxlen: int = 100000
    max_body_bytes: int = 1048576
    sentry_dsn: str = field(default="", repr=False)
    sentry_traces_sample_rate: float = 0.1
    release: str = ""
    routes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ROUTES))
    hitl_priorities: frozenset[str] = frozenset({"P0", "P1"})
    hitl_task_types: frozenset[str] = frozenset({"deploy", "deployment", "feature", "refactor"})
    approver_role: str = "agent"
    metrics_token: str = field(default="", repr=False)

    @property
    def is_production(self) -> bool:
        """ENVIRONMENT=production: the strict checks apply."""
        return self.environment == "production"

    @property
    def uses_memory_redis(self) -> bool:
        """REDIS_URL=memory://: the in-process fakeredis demo mode."""
        return self.redis_url.startswith("memory://")

    @property
    def agents(self) -> tuple[str, ...]:
        """Every agent some task type routes to, sorted."""
        return tuple(sorted(set(self.routes.values())))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse and validate the environment; raises ConfigError on the first bad value."""
        return _Parser(os.environ if environ is None else environ).settings()


class _Parser:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def raw(self, name: str, default: str = "") -> str:
        return self.env.get(name, default).strip()

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

    def items(self, name: str) -> list[str]:
        return [item.strip() for item in self.raw(name).split(",") if item.strip()]

    def settings(self) -> Settings:
        environment = (self.raw("ENVIRONMENT") or "development").lower()
        if environment not in ENVIRONMENTS:
            raise ConfigError("ENVIRONMENT", f"must be one of {', '.join(ENVIRONMENTS)}")
        production = environment == "production"
        return Settings(
            environment=environment,
            jwt_secret=self.jwt_secret(production),
            jwt_secret_previous=self.raw("ORCHESTRATOR_JWT_SECRET_PREVIOUS"),
            api_keys=self.api_keys(),
            redis_url=self.redis_url(production),
            redis_tls_verify=self.boolean("REDIS_TLS_VERIFY", True),
            cors_origins=self.cors_origins(production),
            rate_limit_tasks=self.integer("ORCHESTRATOR_RATE_LIMIT_TASKS", 10, 1),
            rate_limit_events=self.integer("ORCHESTRATOR_RATE_LIMIT_EVENTS", 20, 1),
            rate_limit_approvals=self.integer("ORCHESTRATOR_RATE_LIMIT_APPROVALS", 5, 1),
            rate_limit_stats=self.integer("ORCHESTRATOR_RATE_LIMIT_STATS", 30, 1),
            rate_limit_default=self.integer("ORCHESTRATOR_RATE_LIMIT_DEFAULT", 60, 1),
            **self.rate_limit_exempt(),
            trusted_proxies=self.integer("ORCHESTRATOR_TRUSTED_PROXIES", 1 if production else 0),
            log_level=self.log_level(),
            # At most 25 s: gunicorn kills a worker silent for 30 s, which would turn the
            # promised 503 into a dropped connection.
            health_check_timeout=self.number("HEALTH_CHECK_TIMEOUT", 5, 0.1, 25),
            queue_prefix=self.queue_prefix(),
            task_ttl=self.integer("ORCHESTRATOR_TASK_TTL", 86400, 1),
            approval_timeout=self.integer("ORCHESTRATOR_APPROVAL_TIMEOUT", 86400, 1),
            approval_history_ttl=self.integer("ORCHESTRATOR_APPROVAL_HISTORY_TTL", 2592000, 1),
            max_approval_history=self.integer("ORCHESTRATOR_MAX_APPROVAL_HISTORY", 1000, 1),
            jwt_expires=self.integer("ORCHESTRATOR_JWT_EXPIRES", 3600, 1),
            lease_seconds=self.integer("ORCHESTRATOR_LEASE_SECONDS", 300, 1),
            event_stream_maxlen=self.integer("ORCHESTRATOR_EVENT_STREAM_MAXLEN", 100000, 1),
            max_body_bytes=self.integer("ORCHESTRATOR_MAX_BODY_BYTES", 1048576, 1),
            sentry_dsn=self.raw("SENTRY_DSN"),
            sentry_traces_sample_rate=self.number("SENTRY_TRACES_SAMPLE_RATE", 0.1, 0, 1),
            # Render sets RENDER_GIT_COMMIT on every deploy: a release name for free.
            release=self.raw("RELEASE") or self.raw("RENDER_GIT_COMMIT")[:12],
            routes=self.routes(),
            hitl_priorities=self.hitl_priorities(),
            hitl_task_types=self.hitl_task_types(),
            approver_role=self.role("ORCHESTRATOR_APPROVER_ROLE", "agent"),
            metrics_token=self.raw("ORCHESTRATOR_METRICS_TOKEN"),
        )

    def jwt_secret(self, production: bool) -> str:
        secret = self.raw("ORCHESTRATOR_JWT_SECRET")
        fix = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        if not secret:
            raise ConfigError("ORCHESTRATOR_JWT_SECRET", f"is required; {fix}")
        if production and len(secret) < 32:
            raise ConfigError(
                "ORCHESTRATOR_JWT_SECRET", f"must be at least 32 characters in production; {fix}"
            )
        return secret

    def api_keys(self) -> tuple[ApiKey, ...]:
        keys: list[ApiKey] = []
        seen: set[str] = set()

        def add(variable: str, key: str, role: str, name: str | None) -> None:
            # One key with two roles (or two principals) would make the caller ambiguous.
            if key in seen:
                raise ConfigError(variable, "repeats a key configured elsewhere; keys must differ")
            seen.add(key)
            keys.append(self.api_key(variable, key, role, name))

        for entry in self.items("ORCHESTRATOR_API_KEYS"):
            key, sep, role = entry.partition(":")
            # `key:` (a colon and no role) is a typo, not a request for the default role.
            add("ORCHESTRATOR_API_KEYS", key, role if sep else "agent", None)
        for name in sorted(self.env):
            # An empty value is unset: a dashboard may pass a blank secret it prompted for.
            if (
                name.startswith("ORCHESTRATOR_API_KEY_")
                and name != "ORCHESTRATOR_API_KEY_"
                and self.raw(name)
            ):
                label = name.removeprefix("ORCHESTRATOR_API_KEY_")
                key, sep, role = self.raw(name).rpartition(":")
                if not sep or not _KEY_NAME.match(label):
                    raise ConfigError(name, "must be 'key:role' with role user, agent or admin")
                add(name, key, role, label.lower())
        return tuple(keys)

    @staticmethod
    def api_key(variable: str, key: str, role: str, name: str | None) -> ApiKey:
        import hashlib

        if len(key) < 16 or any(c.isspace() or c in ",:" for c in key):
            raise ConfigError(
                variable, "each key must be at least 16 characters without spaces, ',' or ':'"
            )
        if role not in ROLES:
            raise ConfigError(variable, f"unknown role {role!r}; use user, agent or admin")
        # Unnamed keys get a short, non-reversible id so logs can tell them apart.
        label = name or hashlib.sha256(key.encode()).hexdigest()[:12]
        return ApiKey(key=key, role=role, principal=f"apikey:{label}")

    def redis_url(self, production: bool) -> str:
        url = self.raw("REDIS_URL")
        if not url:
            if production:
                raise ConfigError("REDIS_URL", "is required in production (rediss://...)")
            return "redis://localhost:6379/0"
        if url.startswith("memory://"):
            if production:
                raise ConfigError("REDIS_URL", "memory:// is a single-process demo, not production")
            return url
        if not re.match(r"^(redis|rediss|unix)://.+", url):
            raise ConfigError("REDIS_URL", "must start with redis://, rediss:// or unix://")
        return url

    def cors_origins(self, production: bool) -> tuple[str, ...]:
        origins = self.items("ORCHESTRATOR_CORS_ORIGINS")
        for origin in origins:
            if origin == "*":
                if production:
                    raise ConfigError(
                        "ORCHESTRATOR_CORS_ORIGINS", "'*' is refused in production; list origins"
                    )
                continue
            if not _ORIGIN.match(origin):
                raise ConfigError(
                    "ORCHESTRATOR_CORS_ORIGINS",
                    f"{origin!r} is not an origin like https://app.example.com "
                    "or https://*.example.com",
                )
        return tuple(origins)

    def rate_limit_exempt(self) -> dict:
        principals, networks = set(), []
        for entry in self.items("ORCHESTRATOR_RATE_LIMIT_EXEMPT"):
            if ":" in entry and not _looks_like_ip(entry):
                principals.add(entry)
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigError(
                    "ORCHESTRATOR_RATE_LIMIT_EXEMPT",
                    f"{entry!r} is neither a principal (apikey:ops) nor a CIDR range",
                ) from None
        return {
            "rate_limit_exempt_principals": frozenset(principals),
            "rate_limit_exempt_networks": tuple(networks),
        }

    def log_level(self) -> str:
        level = (self.raw("LOG_LEVEL") or "INFO").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError("LOG_LEVEL", "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    def queue_prefix(self) -> str:
        prefix = self.raw("ORCHESTRATOR_QUEUE_PREFIX") or "orchestrator"
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", prefix):
            raise ConfigError("ORCHESTRATOR_QUEUE_PREFIX", "use 1-64 letters, digits, _ . -")
        return prefix

    def routes(self) -> dict[str, str]:
        routes = dict(DEFAULT_ROUTES)
        for rule in self.items("ORCHESTRATOR_ROUTING_RULES"):
            task_type, _, agent = rule.partition("=")
            task_type, agent = task_type.strip(), agent.strip()
            if task_type not in DEFAULT_ROUTES or not _AGENT.match(agent):
                raise ConfigError(
                    "ORCHESTRATOR_ROUTING_RULES",
                    f"{rule!r} must be type=agent with a known task type and an agent "
                    "name like ops_agent",
                )
            routes[task_type] = agent
        return routes

    def hitl_priorities(self) -> frozenset[str]:
        values = self.set_or_default("ORCHESTRATOR_HITL_PRIORITIES", {"P0", "P1"})
        if not values <= {"P0", "P1", "P2", "P3"}:
            raise ConfigError("ORCHESTRATOR_HITL_PRIORITIES", "list priorities among P0,P1,P2,P3")
        return values

    def hitl_task_types(self) -> frozenset[str]:
        values = self.set_or_default(
            "ORCHESTRATOR_HITL_TASK_TYPES", {"deploy", "deployment", "feature", "refactor"}
        )
        if not values <= set(DEFAULT_ROUTES):
            raise ConfigError("ORCHESTRATOR_HITL_TASK_TYPES", "list known task types only")
        return values

    def set_or_default(self, name: str, default: set[str]) -> frozenset[str]:
        """A comma-separated set; blank means the default and `none` the empty set.

        Blank is the default, as for every other variable: a variable declared but left
        empty on a dashboard must not silently switch off an approval gate.
        """
        if self.raw(name).lower() == "none":
            return frozenset()
        return frozenset(self.items(name)) or frozenset(default)

    def role(self, name: str, default: str) -> str:
        role = self.raw(name) or default
        if role not in ROLES:
            raise ConfigError(name, "must be user, agent or admin")
        return role


def _looks_like_ip(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True
