"""The alert rules, checked and unit-tested by Prometheus's own ``promtool`` (Debian package
``prometheus``; .ci/run installs it): series that must fire and series that must not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import skip_or_fail

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts.test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        skip_or_fail("promtool is not installed (apt-get install prometheus)")
    assert path is not None
    return path


def _run(promtool: str, *args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def _alerts(path: Path) -> dict[str, dict[str, object]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_rules_pass_promtool_check(promtool: str) -> None:
    result = _run(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts(RULES))} rules found" in result.stdout


def test_rules_pass_their_unit_tests(promtool: str) -> None:
    result = _run(promtool, "test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert has a case where it fires and one where it must stay silent."""
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for group in tests:
        for case in group["alert_rule_test"]:
            (fires if case["exp_alerts"] else quiet).add(case["alertname"])
    alerts = set(_alerts(RULES))
    assert alerts == fires, "alerts without a firing case (or cases for unknown alerts)"
    # InstanceDown's quiet cases are the other series of its group (up == 1, another job)
    assert alerts - {"StreamerInstanceDown"} <= quiet


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for name, rule in _alerts(RULES).items():
        labels, annotations = rule.get("labels"), rule.get("annotations")
        assert isinstance(labels, dict) and labels.get("severity") in ("page", "warning"), name
        assert isinstance(annotations, dict) and "{{ $labels.instance }}" in annotations["summary"], name


@pytest.mark.parametrize(
    ("alert", "before", "after"),
    [
        # the unit tests must notice a threshold moved or a guard dropped, not just that the file parses
        ("StreamerFinalLatencyHigh", "> 1.5\n", "> 3.5\n"),
        ("StreamerRefusalsRising", 'reason=~"max_sessions|', 'reason=~"unauthorized|max_sessions|'),
        ("StreamerBreakerOpen", ">= 1", "> 0"),
        ("StreamerLostSentences", "[15m])) >= 3", "[15m])) >= 1"),
    ],
)
def test_a_broken_rule_fails_its_unit_test(
    promtool: str, tmp_path: Path, alert: str, before: str, after: str
) -> None:
    text = RULES.read_text()
    assert before in text, f"{alert}: the mutation no longer applies"
    (tmp_path / RULES.name).write_text(text.replace(before, after))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    assert _run(promtool, "check", "rules", RULES.name, cwd=tmp_path).returncode == 0
    result = _run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0 and alert in result.stdout + result.stderr
