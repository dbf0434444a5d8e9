"""Configuration: every rule of the README's variable table, and how a bad value stops
start-up."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest

from app.config import ConfigError, Settings, variables
from app.domain.model import DEFAULT_ROUTES
from harness import ROOT, free_port

SECRET = "s" * 40
KEY = "k" * 20

# Every numeric variable (README.md, Configuration).
NUMERIC = [
    "ORCHESTRATOR_RATE_LIMIT_TASKS",
    "ORCHESTRATOR_RATE_LIMIT_EVENTS",
    "ORCHESTRATOR_RATE_LIMIT_APPROVALS",
    "ORCHESTRATOR_RATE_LIMIT_STATS",
    "ORCHESTRATOR_RATE_LIMIT_DEFAULT",
    "ORCHESTRATOR_TRUSTED_PROXIES",
    "HEALTH_CHECK_TIMEOUT",
    "ORCHESTRATOR_TASK_TTL",
    "ORCHESTRATOR_APPROVAL_TIMEOUT",
    "ORCHESTRATOR_APPROVAL_HISTORY_TTL",
    "ORCHESTRATOR_MAX_APPROVAL_HISTORY",
    "ORCHESTRATOR_JWT_EXPIRES",
    "ORCHESTRATOR_LEASE_SECONDS",
    "ORCHESTRATOR_EVENT_STREAM_MAXLEN",
    "ORCHESTRATOR_MAX_BODY_BYTES",
    "SENTRY_TRACES_SAMPLE_RATE",
]


def settings(**env: str) -> Settings:
    """Settings from exactly these variables (plus a valid secret unless one is given)."""
    return Settings.from_env({"ORCHESTRATOR_JWT_SECRET": SECRET, **env})


def production(**env: str) -> dict[str, str]:
    """A valid production environment, with `env` on top."""
    return {"ENVIRONMENT": "production", "REDIS_URL": "rediss://red.example:6380/0", **env}


def refused(variable: str, **env: str) -> ConfigError:
    """Assert the environment is refused with a message that names `variable`."""
    with pytest.raises(ConfigError) as caught:
        settings(**env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert len(str(caught.value).splitlines()) == 1
    return caught.value


# --- defaults ---------------------------------------------------------------------------


def test_defaults_are_the_documented_ones():
    s = settings()
    assert s.api_keys == ()
    assert s.redis_url == "redis://localhost:6379/0" and s.redis_tls_verify is True
    assert s.cors_origins == ()
    assert (
        s.rate_limit_tasks,
        s.rate_limit_events,
        s.rate_limit_approvals,
        s.rate_limit_stats,
        s.rate_limit_default,
    ) == (10, 20, 5, 30, 60)
    assert s.rate_limit_exempt_principals == frozenset()
    assert s.rate_limit_exempt_networks == ()
    assert s.jwt_secret_previous == ""
    assert s.trusted_proxies == 0
    assert s.environment == "development" and not s.is_production
    assert s.log_level == "INFO"
    assert s.health_check_timeout == 5
    assert s.queue_prefix == "orchestrator"
    assert s.task_ttl == 86400
    assert s.approval_timeout == 86400
    assert s.approval_history_ttl == 2592000
    assert s.max_approval_history == 1000
    assert s.jwt_expires == 3600
    assert s.lease_seconds == 300
    assert s.event_stream_maxlen == 100000
    assert s.max_body_bytes == 1048576
    assert s.sentry_dsn == "" and s.sentry_traces_sample_rate == 0.1
    assert dict(s.routes) == DEFAULT_ROUTES
    assert s.hitl_priorities == {"P0", "P1"}
    assert s.hitl_task_types == {"deploy", "deployment", "feature", "refactor"}


def test_blank_values_mean_the_default():
    blank = dict.fromkeys(
        [
            *NUMERIC,
            "ENVIRONMENT",
            "LOG_LEVEL",
            "REDIS_URL",
            "ORCHESTRATOR_QUEUE_PREFIX",
            "ORCHESTRATOR_HITL_PRIORITIES",
            "ORCHESTRATOR_HITL_TASK_TYPES",
        ],
        "  ",
    )
    assert settings(**blank) == settings()


def test_defaults_route_the_fifteen_documented_types():
    assert DEFAULT_ROUTES == {
        "bugfix": "dev_agent",
        "feature": "dev_agent",
        "refactor": "dev_agent",
        "investigate": "dev_agent",
        "deploy": "ops_agent",
        "deployment": "ops_agent",
        "monitor": "ops_agent",
        "monitoring": "ops_agent",
        "alert": "ops_agent",
        "incident": "ops_agent",
        "faq": "faq_agent",
        "faq_update": "faq_agent",
        "kb_update": "faq_agent",
        "documentation": "faq_agent",
        "knowledge_sync": "faq_agent",
    }
    assert settings().agents == ("dev_agent", "faq_agent", "ops_agent")


# --- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize("variable", NUMERIC)
@pytest.mark.parametrize("value", ["abc", "12abc", "-", "ten"])
def test_non_numeric_value_is_refused(variable, value):
    error = refused(variable, **{variable: value})
    assert repr(value) in str(error)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORCHESTRATOR_RATE_LIMIT_TASKS", "0"),
        ("ORCHESTRATOR_RATE_LIMIT_DEFAULT", "-5"),
        ("ORCHESTRATOR_TASK_TTL", "1.5"),
        ("ORCHESTRATOR_LEASE_SECONDS", "0"),
        ("ORCHESTRATOR_MAX_BODY_BYTES", "1e6"),
        ("ORCHESTRATOR_TRUSTED_PROXIES", "-1"),
        ("HEALTH_CHECK_TIMEOUT", "0"),
        ("HEALTH_CHECK_TIMEOUT", "nan"),
        ("HEALTH_CHECK_TIMEOUT", "inf"),
        ("HEALTH_CHECK_TIMEOUT", "30"),  # beyond gunicorn's 30 s worker timeout
        ("SENTRY_TRACES_SAMPLE_RATE", "1.5"),
        ("SENTRY_TRACES_SAMPLE_RATE", "-0.1"),
    ],
)
def test_out_of_range_number_is_refused(variable, value):
    refused(variable, **{variable: value})


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("ORCHESTRATOR_RATE_LIMIT_TASKS", " 7 ", "rate_limit_tasks", 7),
        ("ORCHESTRATOR_LEASE_SECONDS", "1", "lease_seconds", 1),
        ("HEALTH_CHECK_TIMEOUT", "0.5", "health_check_timeout", 0.5),
        ("SENTRY_TRACES_SAMPLE_RATE", "0", "sentry_traces_sample_rate", 0.0),
        ("ORCHESTRATOR_TRUSTED_PROXIES", "2", "trusted_proxies", 2),
    ],
)
def test_numbers_are_parsed(variable, value, attribute, expected):
    assert getattr(settings(**{variable: value}), attribute) == expected


# --- environment, secret, logging -------------------------------------------------------


@pytest.mark.parametrize("value", ["prod", "dev", "live", "production2"])
def test_unknown_environment_is_refused(value):
    refused("ENVIRONMENT", ENVIRONMENT=value)


@pytest.mark.parametrize("value", ["development", "staging", "production", "testing", "Production"])
def test_known_environments(value):
    env = production(ENVIRONMENT=value) if value.lower() == "production" else {"ENVIRONMENT": value}
    assert settings(**env).environment == value.lower()


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_jwt_secret_is_refused(value):
    env = {} if value is None else {"ORCHESTRATOR_JWT_SECRET": value}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == "ORCHESTRATOR_JWT_SECRET"
    assert "gen-secret" in str(caught.value)  # says how to fix it


def test_short_secret_is_refused_in_production_only():
    refused("ORCHESTRATOR_JWT_SECRET", **production(ORCHESTRATOR_JWT_SECRET="x" * 31))
    assert settings(**production(ORCHESTRATOR_JWT_SECRET="x" * 32)).jwt_secret == "x" * 32


def test_short_previous_secret_is_refused_in_production_only():
    previous = "ORCHESTRATOR_JWT_SECRET_PREVIOUS"
    refused(previous, **production(**{previous: "weak"}))
    assert settings(**{previous: "weak"}).jwt_secret_previous == "weak"
    assert settings(**production(**{previous: "y" * 32})).jwt_secret_previous == "y" * 32
    assert settings(**production()).jwt_secret_previous == ""
    for environment in ("development", "staging", "testing"):
        assert (
            settings(ENVIRONMENT=environment, ORCHESTRATOR_JWT_SECRET="short").jwt_secret == "short"
        )


def test_secrets_stay_out_of_repr():
    s = settings(
        ORCHESTRATOR_JWT_SECRET_PREVIOUS="p" * 40,
        ORCHESTRATOR_API_KEYS=f"{KEY}:admin",
        SENTRY_DSN="https://k@sentry.example/1",
    )
    assert SECRET not in repr(s) and "p" * 40 not in repr(s) and KEY not in repr(s)
    assert "sentry.example" not in repr(s)
    assert s.jwt_secret_previous == "p" * 40


@pytest.mark.parametrize(("value", "expected"), [("debug", "DEBUG"), ("WARNING", "WARNING")])
def test_log_level(value, expected):
    assert settings(LOG_LEVEL=value).log_level == expected


def test_unknown_log_level_is_refused():
    refused("LOG_LEVEL", LOG_LEVEL="verbose")


@pytest.mark.parametrize("value", ["has space", "semi;colon", "x" * 65, "a/b"])
def test_bad_queue_prefix_is_refused(value):
    refused("ORCHESTRATOR_QUEUE_PREFIX", ORCHESTRATOR_QUEUE_PREFIX=value)


# --- Redis ------------------------------------------------------------------------------


def test_redis_url_is_required_in_production():
    env = production()
    del env["REDIS_URL"]
    error = refused("REDIS_URL", **env)
    assert "production" in str(error)


def test_memory_redis_is_refused_in_production_only():
    error = refused("REDIS_URL", **production(REDIS_URL="memory://"))
    assert "memory://" in str(error)
    assert settings(REDIS_URL="memory://").uses_memory_redis


@pytest.mark.parametrize(
    "value",
    [
        "http://localhost:6379",
        "localhost:6379",
        "redis://",
        "redis:/localhost",
        "tcp://127.0.0.1:6379",
        "redis+sentinel://s1:26379",
        "redis+sentinel://s1:26379,s2/mymaster",
        "redis+sentinel://s1:26379/mymaster/x",
        "redis+cluster://",
        "redis+cluster://c1:7000/3",
        "valkey+cluster://c1:7000",
    ],
)
def test_bad_redis_url_scheme_is_refused(value):
    refused("REDIS_URL", REDIS_URL=value)


@pytest.mark.parametrize(
    "value",
    [
        "redis://cache:6379/1",
        "rediss://u:p@red.example:6380/0",
        "unix:///run/redis.sock",
        "redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster",
        "rediss+sentinel://:secret@s1:26379/mymaster/2?sentinel_password=other",
        "redis+cluster://c1:7000,c2:7001",
        "rediss+cluster://user:pw@c1:7000",
    ],
)
def test_redis_urls_accepted(value):
    assert settings(REDIS_URL=value).redis_url == value


@pytest.mark.parametrize(
    "value",
    [
        "redis://:hunter/2@cache:6379/0",
        "rediss://app:hunter?2@cache:6380/0",
        "redis://:hunter#2@cache:6379/0",
        "redis+sentinel://:hunter/2@s1:26379/mymaster",
        "redis+sentinel://:hunter\u2100@s1:26379/mymaster",  # urlsplit's NFKC error
    ],
)
def test_a_password_with_an_unencoded_delimiter_is_refused_without_quoting_it(value):
    # urlsplit ends the host at the first / ? #: redis-py then read the password's start
    # as a port and stopped the worker with a traceback quoting it.
    error = refused("REDIS_URL", REDIS_URL=value)
    assert "hunter" not in str(error)


@pytest.mark.parametrize(
    "value",
    [
        "redis://cache:port/0",
        "redis://cache:99999/0",
        "redis://c1:6379,c2:6379/0",
        "redis://cache:6379/zero",
        "redis://cache:6379/0/1",
        "redis://cache:6379/1?db=2",
        "redis+sentinel://s1:26379/mymaster/1?db=2",
        "redis+sentinel://s1:26379/mymaster?password=x",
        "redis+cluster://c1:7000?ssl_cert_reqs=none",
    ],
)
def test_a_url_redis_py_would_misread_or_ignore_in_part_is_refused(value):
    # Accepted before, these failed only in the worker (a port that is no number), or
    # silently used another database than the URL seems to name (redis-py drops a path
    # that is no number, reads /0/1 as 1 and lets ?db= win), or dropped an option.
    refused("REDIS_URL", REDIS_URL=value)


@pytest.mark.parametrize(
    "value",
    [
        "redis://localhost:abc/0",
        "rediss://:pw@red.example:99999/0",
        # A password with an unencoded / ? or # ends the host part inside the password.
        "redis://:s3cr3tpw/x@localhost:6379/0",
        "rediss://u:s3cr3tpw?x@red.example:6380/0",
        "redis+sentinel://:s3cr3tpw#x@s1:26379/mymaster",
        "redis+cluster://u:s3cr3tpw/x@c1:7000",
    ],
)
def test_unreadable_redis_host_or_port_is_refused_without_the_password(value):
    # Before, a single-node URL passed and start-up died in redis-py with a traceback
    # ("Port could not be cast to integer value as 's3cr3tpw'"); a sentinel or cluster
    # URL was refused with the password's first part in the message.
    error = refused("REDIS_URL", REDIS_URL=value)
    assert "s3cr3tpw" not in str(error)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORCHESTRATOR_AGENT_CONCURRENCY", "dev_agent=²"),
        ("REDIS_URL", "redis://localhost:6³79/0"),
        ("REDIS_URL", "redis+sentinel://s1:26379/mymaster/²"),
    ],
)
def test_a_digit_int_cannot_read_is_one_configuration_line(name, value):
    # str.isdigit() takes '²', which int() refuses: a traceback at start-up, once.
    assert name in str(refused(name, **{name: value}))


def test_min_replicas_defaults_to_zero_and_needs_a_real_redis():
    assert settings().redis_min_replicas == 0
    assert settings(ORCHESTRATOR_REDIS_MIN_REPLICAS="2").redis_min_replicas == 2
    refused("ORCHESTRATOR_REDIS_MIN_REPLICAS", ORCHESTRATOR_REDIS_MIN_REPLICAS="-1")
    refused(
        "ORCHESTRATOR_REDIS_MIN_REPLICAS",
        REDIS_URL="memory://",
        ORCHESTRATOR_REDIS_MIN_REPLICAS="1",
    )


@pytest.mark.parametrize(
    ("value", "expected"), [("false", False), ("0", False), ("true", True), ("yes", True)]
)
def test_redis_tls_verify(value, expected):
    assert settings(REDIS_TLS_VERIFY=value).redis_tls_verify is expected


def test_bad_redis_tls_verify_is_refused():
    refused("REDIS_TLS_VERIFY", REDIS_TLS_VERIFY="maybe")


# --- CORS -------------------------------------------------------------------------------


def test_wildcard_origin_is_refused_in_production_only():
    error = refused("ORCHESTRATOR_CORS_ORIGINS", **production(ORCHESTRATOR_CORS_ORIGINS="*"))
    assert "production" in str(error)
    assert settings(ORCHESTRATOR_CORS_ORIGINS="*").cors_origins == ("*",)


@pytest.mark.parametrize(
    "origin",
    [
        "app.example.com",
        "https://app.example.com/",
        "https://app.example.com/path",
        "ftp://app.example.com",
        "https://a.*.example.com",
        "https://*",
        "https://**.example.com",
        "https://app.example.com:port",
    ],
)
def test_malformed_origin_is_refused(origin):
    error = refused(
        "ORCHESTRATOR_CORS_ORIGINS", ORCHESTRATOR_CORS_ORIGINS=f"https://ok.example.com,{origin}"
    )
    assert repr(origin) in str(error)


def test_origins_are_parsed():
    value = " https://app.example.com , https://*.vercel.app,http://localhost:3000,"
    assert settings(ORCHESTRATOR_CORS_ORIGINS=value).cors_origins == (
        "https://app.example.com",
        "https://*.vercel.app",
        "http://localhost:3000",
    )


# --- API keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORCHESTRATOR_API_KEYS", f"{KEY}:root"),  # unknown role
        ("ORCHESTRATOR_API_KEYS", f"{KEY}:Admin"),
        ("ORCHESTRATOR_API_KEYS", f"{KEY}:"),  # empty role
        ("ORCHESTRATOR_API_KEYS", "short:admin"),  # key under 16 characters
        ("ORCHESTRATOR_API_KEYS", f"{KEY},tooshort"),
        ("ORCHESTRATOR_API_KEYS", f"{KEY}:admin:agent"),  # ':' inside
        ("ORCHESTRATOR_API_KEYS", f"{KEY}:admin,{KEY}:user"),  # one key, two roles
        ("ORCHESTRATOR_API_KEY_X", KEY),  # no ':role'
        ("ORCHESTRATOR_API_KEY_X", f"{KEY}:superuser"),
        ("ORCHESTRATOR_API_KEY_X", "short:agent"),
        ("ORCHESTRATOR_API_KEY_X", f"{KEY}:"),
        ("ORCHESTRATOR_API_KEY_BAD-NAME", f"{KEY}:agent"),
    ],
)
def test_malformed_api_key_is_refused(variable, value):
    refused(variable, **{variable: value})


def test_malformed_api_key_message_never_shows_the_key():
    error = refused("ORCHESTRATOR_API_KEYS", ORCHESTRATOR_API_KEYS=f"{KEY}:root")
    assert KEY not in str(error)


def test_a_key_configured_twice_is_refused():
    error = refused(
        "ORCHESTRATOR_API_KEY_OPS",
        ORCHESTRATOR_API_KEYS=KEY,
        ORCHESTRATOR_API_KEY_OPS=f"{KEY}:admin",
    )
    assert KEY not in str(error)


def test_api_keys_are_parsed():
    other = "o" * 24
    s = settings(
        ORCHESTRATOR_API_KEYS=f" {KEY} , {other}:user ",
        ORCHESTRATOR_API_KEY_OPS="ops-key-0123456789:admin",
        ORCHESTRATOR_API_KEY_CI_BOT="ci-key-0123456789abc:agent",
    )
    by_key = {k.key: k for k in s.api_keys}
    assert set(by_key) == {KEY, other, "ops-key-0123456789", "ci-key-0123456789abc"}
    assert by_key[KEY].role == "agent"  # a bare key is an agent
    assert by_key[other].role == "user"
    assert (by_key["ops-key-0123456789"].role, by_key["ops-key-0123456789"].principal) == (
        "admin",
        "apikey:ops",
    )
    assert by_key["ci-key-0123456789abc"].principal == "apikey:ci_bot"
    # Unnamed keys get distinct principals that do not reveal the key.
    unnamed = {by_key[KEY].principal, by_key[other].principal}
    assert len(unnamed) == 2 and all(p.startswith("apikey:") for p in unnamed)
    assert not any(KEY[:8] in p or other[:8] in p for p in unnamed)


# --- proxies and rate-limit exemptions --------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "expected"),
    [("development", 0), ("testing", 0), ("staging", 0), ("production", 0)],
)
def test_trusted_proxies_default_by_environment(environment, expected):
    env = production() if environment == "production" else {"ENVIRONMENT": environment}
    assert settings(**env).trusted_proxies == expected
    assert settings(**env, RENDER="true").trusted_proxies == 1  # Render's one proxy
    assert settings(**env, ORCHESTRATOR_TRUSTED_PROXIES="3").trusted_proxies == 3
    assert settings(**env, RENDER="true", ORCHESTRATOR_TRUSTED_PROXIES="0").trusted_proxies == 0


def test_rate_limit_exempt_splits_principals_and_networks():
    s = settings(
        ORCHESTRATOR_RATE_LIMIT_EXEMPT=(
            "apikey:ops, 10.0.0.0/8,192.168.1.7 ,jwt:deploy-bot,2001:db8::/32,::1"
        )
    )
    assert s.rate_limit_exempt_principals == {"apikey:ops", "jwt:deploy-bot"}
    assert s.rate_limit_exempt_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize("value", ["garbage", "10.0.0.300", "10.0.0.0/33", "apikey:ops,nope"])
def test_rate_limit_exempt_garbage_is_refused(value):
    refused("ORCHESTRATOR_RATE_LIMIT_EXEMPT", ORCHESTRATOR_RATE_LIMIT_EXEMPT=value)


# --- routing and HITL -------------------------------------------------------------------


def test_routing_rules_override_the_table():
    s = settings(ORCHESTRATOR_ROUTING_RULES="deploy=release_agent, faq = support_agent")
    assert s.routes["deploy"] == "release_agent"
    assert s.routes["faq"] == "support_agent"
    assert s.routes["deployment"] == "ops_agent"  # the rest keep their default
    assert s.agents == ("dev_agent", "faq_agent", "ops_agent", "release_agent", "support_agent")


@pytest.mark.parametrize(
    "rule",
    [
        "unknown=dev_agent",
        "deploy",
        "deploy=",
        "deploy=Ops-Agent",
        "=dev_agent",
        "deploy=ops agent",
    ],
)
def test_bad_routing_rule_is_refused(rule):
    error = refused("ORCHESTRATOR_ROUTING_RULES", ORCHESTRATOR_ROUTING_RULES=rule)
    assert repr(rule.strip()) in str(error) or "type=agent" in str(error)


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("ORCHESTRATOR_HITL_PRIORITIES", "P0", "hitl_priorities", {"P0"}),
        ("ORCHESTRATOR_HITL_PRIORITIES", "P0,P1,P2", "hitl_priorities", {"P0", "P1", "P2"}),
        (
            "ORCHESTRATOR_HITL_TASK_TYPES",
            "deploy,incident",
            "hitl_task_types",
            {"deploy", "incident"},
        ),
        ("ORCHESTRATOR_APPROVER_ROLE", "admin", "approver_role", "admin"),
    ],
)
def test_hitl_settings(variable, value, attribute, expected):
    assert getattr(settings(**{variable: value}), attribute) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORCHESTRATOR_HITL_PRIORITIES", "P5"),
        ("ORCHESTRATOR_HITL_PRIORITIES", "p0"),
        ("ORCHESTRATOR_HITL_TASK_TYPES", "deploy,launch"),
        ("ORCHESTRATOR_APPROVER_ROLE", "root"),
    ],
)
def test_bad_hitl_setting_is_refused(variable, value):
    refused(variable, **{variable: value})


# --- start-up with a bad value ----------------------------------------------------------


def bad_env(**extra: str) -> dict[str, str]:
    """The process environment with a bad rate limit and nothing from the caller's .env."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORCHESTRATOR_", "REDIS_", "ENVIRONMENT", "HEALTH_", "SENTRY_"))
    }
    env.update(
        ORCHESTRATOR_JWT_SECRET=SECRET,
        REDIS_URL="redis://127.0.0.1:1/0",
        ORCHESTRATOR_RATE_LIMIT_TASKS="ten",
        **extra,
    )
    return env


def test_import_wsgi_with_a_bad_value_prints_one_line_and_exits():
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=bad_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "ORCHESTRATOR_RATE_LIMIT_TASKS" in lines[0] and "'ten'" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("config", "workers"),
    [
        (["-c", "gunicorn.conf.py"], "1"),
        (["-c", "gunicorn.conf.py"], "5"),
        # Without our config file the workers fail instead: wsgi.py's exit code 3 must make
        # gunicorn halt ("worker failed to boot"), not respawn them forever.
        (["-c", "{empty}", "--workers", "1", "--no-control-socket"], "1"),
    ],
)
def test_gunicorn_with_a_bad_value_halts_with_one_line(config, workers, tmp_path):
    empty = tmp_path / "empty.conf.py"  # gunicorn would read ./gunicorn.conf.py by default
    empty.write_text("")
    workers_fail = "{empty}" in config
    config = [arg.format(empty=empty) for arg in config]
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", *config, "wsgi:app", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=bad_env(PORT=str(port), WEB_CONCURRENCY=workers),
        capture_output=True,
        text=True,
        timeout=15,  # a gunicorn that never halts fails the test here
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    messages = [line for line in output.splitlines() if "ORCHESTRATOR_RATE_LIMIT_TASKS" in line]
    assert len(messages) == 1, output
    assert messages[0] == (
        "orchestrator: configuration error: ORCHESTRATOR_RATE_LIMIT_TASKS: "
        "must be a whole number, got 'ten'"
    )
    assert "Traceback" not in output
    # Our config refuses in the master, before any worker; without it each worker fails
    # once and is not replaced.
    assert output.count("Booting worker") == (int(workers) if workers_fail else 0), output
    if workers_fail:
        assert result.returncode == 3 and "Reason: Worker failed to boot." in output


def test_ungated_environments_are_normalised_and_none_gates_everything():
    variable = "ORCHESTRATOR_HITL_UNGATED_ENVIRONMENTS"
    assert "qa" in settings().hitl_ungated_environments
    assert settings(**{variable: " Sandbox ,ＤＥＶ"}).hitl_ungated_environments == {
        "sandbox",
        "dev",
    }
    assert settings(**{variable: "none"}).hitl_ungated_environments == frozenset()


def test_api_keys_may_be_scoped_to_agents():
    key = "scoped-key-0123456789abcdef"
    scoped = settings(ORCHESTRATOR_API_KEY_BOT=f"{key}:agent:dev_agent+ops_agent").api_keys
    assert {k.principal: k.agents for k in scoped}["apikey:bot"] == {"dev_agent", "ops_agent"}
    listed = settings(ORCHESTRATOR_API_KEYS=f"{key}:agent:faq_agent").api_keys
    assert listed[0].role == "agent" and listed[0].agents == {"faq_agent"}
    refused("ORCHESTRATOR_API_KEY_BOT", ORCHESTRATOR_API_KEY_BOT=f"{key}:agent:Bad Agent")
    assert settings(ORCHESTRATOR_API_KEY_BOT=f"{key}:agent").api_keys[-1].agents == frozenset()


def test_env_example_lists_every_variable_with_its_default():
    text = (ROOT / ".env.example").read_text()
    lines = [line.strip() for line in text.splitlines()]
    named = {line.lstrip("# ").partition("=")[0] for line in lines if "=" in line}
    family = {"ORCHESTRATOR_API_KEY_<NAME>": "ORCHESTRATOR_API_KEY_ADMIN"}
    family["ORCHESTRATOR_GROUP_<NAME>"] = "ORCHESTRATOR_GROUP_SRE"
    missing = [v for v in variables() if family.get(v, v) not in named]
    assert not missing, f".env.example does not list {missing}"
    active = dict(line.partition("=")[::2] for line in lines if line and line[0] != "#")
    assert settings(**active) == settings()
