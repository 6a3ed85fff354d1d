"""The shipped alert rules and dashboard: promtool proves the rules, and both name only real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from keysvc.commands.monitoring import shipped
from keysvc.metrics import Metrics
from tests.servers import run_cli

DATA = Path(__file__).parent / "monitoring_data"
BUILTIN = {"le", "time", "rate", "increase", "sum", "by", "count", "max", "min", "histogram_quantile",
           "ignoring", "and", "without", "on"}  # fmt: skip


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real promtool."""
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: run .ci/bootstrap (Debian package prometheus)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def exposed_names() -> set[str]:
    """Every metric name (samples included) a keysvc with store and readiness gauges exposes."""
    metrics = Metrics()
    metrics.watch_store(lambda: (1, 1))
    metrics.watch_readiness(lambda: None)
    metrics.request_seconds.observe(0.1, "GET", "/healthz", "200")
    metrics.event("revoked", 1.0)
    return {
        line.split("{")[0].split(" ")[0] for line in metrics.render().splitlines() if not line.startswith("#")
    }


def metric_names(expr: str) -> set[str]:
    """The identifiers of a PromQL expression that look like metric names."""
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\([a-z_]+(, *[a-z_]+)*\)", "", without_strings)
    return {n for n in re.findall(r"[a-z_][a-z0-9_]*", without_labels) if n not in BUILTIN and "_" in n}


def test_rules_pass_promtool_check_and_every_alert_is_unit_tested(tmp_path: Path) -> None:
    """`promtool check rules` passes, and `promtool test rules` proves every alert fires and stays quiet."""
    (tmp_path / "alerts.yml").write_text(shipped("alerts"))
    shutil.copy(DATA / "alerts_test.yml", tmp_path / "alerts_test.yml")
    checked = promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = yaml.safe_load(shipped("alerts"))["groups"][0]["rules"]
    cases = yaml.safe_load((DATA / "alerts_test.yml").read_text())["tests"]
    firing = {c["alertname"] for t in cases for c in t["alert_rule_test"] if c["exp_alerts"]}
    assert {rule["alert"] for rule in rules} == firing


def test_promtool_test_rules_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    """The rule tests are not vacuous: expecting silence where the alert fires makes promtool fail."""
    (tmp_path / "alerts.yml").write_text(shipped("alerts"))
    text = (DATA / "alerts_test.yml").read_text()
    lag = r"(alertname: KeysvcEventConsumerLag\n\s+exp_alerts:)\n\s+- exp_labels:.*\n\s+exp_annotations:.*"
    broken = re.sub(lag, r"\1 []", text)
    assert broken != text
    (tmp_path / "alerts_test.yml").write_text(broken)
    assert promtool("test", "rules", "alerts_test.yml", cwd=tmp_path).returncode != 0


def test_alerts_and_dashboard_name_only_metrics_keysvc_exposes() -> None:
    """Every metric an alert or a dashboard panel queries is one keysvc really exports."""
    exposed = exposed_names()
    rules = yaml.safe_load(shipped("alerts"))["groups"][0]["rules"]
    dashboard = json.loads(shipped("dashboard"))
    exprs = [rule["expr"] for rule in rules]
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used
    assert used <= exposed, sorted(used - exposed)


def test_the_command_prints_both() -> None:
    """`keysvc monitoring alerts|dashboard` prints the shipped files byte for byte."""
    assert run_cli(["keysvc", "monitoring", "alerts"]).stdout == shipped("alerts")
    assert json.loads(run_cli(["keysvc", "monitoring", "dashboard"]).stdout)["uid"] == "nodelogs-keysvc"
