"""deploy/prometheus-alerts.yml: valid for Prometheus, and about metrics the service has."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness import ROOT

RULES = ROOT / "deploy" / "prometheus-alerts.yml"


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (apt-get install prometheus; .ci/run installs it)"
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_metric_an_alert_uses_is_exported(api, client):
    api.create()
    client.get("/tasks", headers={"X-API-Key": "wrong-key-0123456789"})  # an auth failure
    exported = {
        sample.name
        for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
        for sample in family.samples
    }
    rules = [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
    used = {
        name
        for rule in rules
        for name in re.findall(r"\b((?:orchestrator|process)_[a-z_]+)\b", rule["expr"])
    }
    assert used, "the rules name no metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    # Each of the guide's thresholds has a warning and a critical rule.
    severities = {(r["alert"], r["labels"]["severity"]) for r in rules}
    for alert in (
        "OrchestratorRedisDown",
        "OrchestratorSlowResponses",
        "OrchestratorErrorRate",
        "OrchestratorHighCpu",
        "OrchestratorQueueDepth",
    ):
        assert {(alert, "warning"), (alert, "critical")} <= severities
