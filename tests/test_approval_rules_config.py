"""ORCHESTRATOR_APPROVAL_POLICY and ORCHESTRATOR_GROUP_<NAME>: parsed, checked, and a
malformed policy stopping start-up with one line, in the gunicorn master."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from app.config import ConfigError, Settings
from harness import ROOT, free_port
from tests.policy_helpers import POLICY, policy_env

SECRET = "s" * 40
VARIABLE = "ORCHESTRATOR_APPROVAL_POLICY"
RULE = {"name": "prod", "match": {"types": ["deploy"]}, "required": 2, "approvers": ["group:sre"]}


def settings(policy, **env: str) -> Settings:
    text = policy if isinstance(policy, str) else json.dumps(policy)
    return Settings.from_env(
        {
            "ORCHESTRATOR_JWT_SECRET": SECRET,
            VARIABLE: text,
            "ORCHESTRATOR_GROUP_SRE": "a,b,c",
            **env,
        }
    )


def test_no_policy_means_no_rules():
    assert Settings.from_env({"ORCHESTRATOR_JWT_SECRET": SECRET}).approval_policy.rules == ()


def test_the_documented_policy_parses(tmp_path):
    inline = Settings.from_env({"ORCHESTRATOR_JWT_SECRET": SECRET, **policy_env()})
    assert [rule.name for rule in inline.approval_policy.rules] == [r["name"] for r in POLICY]
    flags = inline.approval_policy.rules[1]
    assert (flags.timeout, flags.escalate_to, flags.extend) == (3, ("role:admin",), 3)
    assert inline.approval_policy.groups_of("apikey:ops") == ["web"]
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY))
    from_file = Settings.from_env(
        {"ORCHESTRATOR_JWT_SECRET": SECRET, **policy_env(**{VARIABLE: f"@{path}"})}
    )
    assert from_file.approval_policy == inline.approval_policy


def test_group_names_are_case_insensitive_and_members_trimmed():
    parsed = settings([{**RULE, "approvers": ["group:SRE"]}], ORCHESTRATOR_GROUP_SRE=" a , b ")
    assert parsed.approval_policy.rules[0].approvers == ("group:sre",)
    assert parsed.approval_policy.groups["sre"] == frozenset({"a", "b"})


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("[{", "not valid JSON"),
        ("{}", "must be a non-empty JSON list of rules"),
        ([{**RULE, "owner": "x"}], "rule 'prod': unknown field 'owner'"),
        ([{**RULE, "required": 0}], "rule 'prod': 'required' must be a whole number from 1 to 10"),
        ([{**RULE, "required": 11}], "rule 'prod': 'required' must be"),
        ([{**RULE, "required": "2"}], "rule 'prod': 'required' must be"),
        ([{**RULE, "required": 4}], "rule 'prod': 'required' is 4 but only 3 principals"),
        ([{**RULE, "approvers": ["group:dba"]}], "rule 'prod': 'approvers' names group 'dba'"),
        ([{**RULE, "approvers": []}], "rule 'prod': 'approvers' must be a non-empty list"),
        ([{**RULE, "approvers": ["role:root"]}], "rule 'prod': 'approvers' has unknown role"),
        ([{**RULE, "match": {"types": ["launch"]}}], "rule 'prod': match.types has unknown"),
        ([{**RULE, "match": {"priorities": ["P9"]}}], "rule 'prod': match.priorities has"),
        ([{**RULE, "match": {"env": ["x"]}}], "rule 'prod': unknown match field 'env'"),
        ([{**RULE, "timeout": 0}], "rule 'prod': 'timeout' must be"),
        ([{**RULE, "on_timeout": "wait"}], "rule 'prod': 'on_timeout' must be"),
        ([{**RULE, "on_timeout": {"escalate_to": ["role:admin"]}}], "on_timeout.extend must"),
        ([{**RULE, "on_timeout": {"escalate_to": [], "extend": 5}}], "on_timeout.escalate_to"),
        ([RULE, RULE], "rule 'prod': a rule with this name comes earlier"),
        ([{k: v for k, v in RULE.items() if k != "match"}], "rule 'prod': missing field 'match'"),
        ([{**RULE, "name": ""}], "rule 1: needs a non-empty string 'name'"),
        ("@/nonexistent/policy.json", "cannot read '/nonexistent/policy.json'"),
    ],
)
def test_a_malformed_policy_is_refused_naming_the_rule(policy, message):
    with pytest.raises(ConfigError) as refused:
        settings(policy)
    assert str(refused.value).startswith(f"{VARIABLE}: ")
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("[{", "not valid JSON (Expecting property name enclosed in double quotes"),
        ([{**RULE, "owner": "x"}], "rule 'prod': unknown field 'owner'"),
        ([{**RULE, "required": 0}], "rule 'prod': 'required' must be a whole number from 1 to 10"),
        (
            [{**RULE, "approvers": ["group:dba"]}],
            "rule 'prod': 'approvers' names group 'dba', but ORCHESTRATOR_GROUP_DBA is unset",
        ),
    ],
)
def test_gunicorn_master_halts_on_a_malformed_policy_with_one_line(policy, message):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "REDIS_"))}
    env |= {
        "ORCHESTRATOR_JWT_SECRET": SECRET,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "ORCHESTRATOR_GROUP_SRE": "a,b,c",
        VARIABLE: policy if isinstance(policy, str) else json.dumps(policy),
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=15,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    lines = [line for line in output.splitlines() if VARIABLE in line]
    assert len(lines) == 1, output
    assert lines[0].startswith(f"orchestrator: configuration error: {VARIABLE}: {message}")
    assert "Traceback" not in output and "Booting worker" not in output
