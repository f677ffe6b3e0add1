"""The shipped Prometheus alert rules: valid (``promtool check rules``) and unit-tested
(``promtool test rules``, every alert firing and not firing on input series)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import need

CONF = Path(__file__).resolve().parents[1] / "conf" / "prometheus"
PROMTOOL = shutil.which("promtool")



@pytest.fixture(autouse=True)
def _promtool_present() -> None:
    need("promtool", "prometheus")  # a skip locally, a failure under CI=true


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_alert_rules_are_valid() -> None:
    result = _promtool("check", "rules", str(CONF / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(CONF / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_severity_and_annotations() -> None:
    import yaml

    rules = yaml.safe_load((CONF / "alerts.yml").read_text())
    tests = yaml.safe_load((CONF / "alerts_test.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    tested_firing = {
        t["alertname"]
        for case in tests["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    tested_silent = {
        t["alertname"]
        for case in tests["tests"]
        for t in case.get("alert_rule_test", [])
        if not t.get("exp_alerts")
    }
    names = {a["alert"] for a in alerts}
    assert names - tested_firing == set(), "alerts without a firing test"
    assert names - tested_silent == set(), "alerts without a not-firing test"
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert "$labels.pair" in alert["annotations"]["summary"], alert["alert"]
        assert {"summary", "description"} <= alert["annotations"].keys(), alert["alert"]


def test_example_scrape_config_is_valid() -> None:
    # Also checks alerts.yml again, through the config's rule_files.
    result = _promtool("check", "config", str(CONF / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
