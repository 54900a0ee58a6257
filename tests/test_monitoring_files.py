"""The Prometheus rules and config and the Grafana dashboard: valid for the real tools, and about
the metrics the workers actually serve, with the audit's thresholds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.promtool import run_promtool
from warmup import metrics

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "warmup.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "warmup.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

# The audit's thresholds, one alert each: metric -> (alert, number that must appear in its expression).
AUDIT_THRESHOLDS = {
    "warmup_emails_sent_total": ("WarmupThroughputBelowExpected", "0.8"),
    "warmup_quota_fill_rate_per_mailbox": ("WarmupQuotaFillLow", "0.9"),
    "warmup_queue_depth": ("WarmupQueueBacklogHigh", "10000"),
    "warmup_worker_utilization": ("WarmupWorkerCpuSaturated", "0.8"),
    "warmup_errors_per_hour": ("WarmupErrorRateHigh", "0.05"),
    "warmup_cycle_duration_seconds": ("WarmupSendsLate", "300"),
}


def _alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]


def _metric_names(expr: str) -> set[str]:
    """warmup_* series an expression reads, with histogram suffixes folded into the family."""
    names = set(re.findall(r"\bwarmup_[a-z_]+", expr))
    return {re.sub(r"_bucket$", "", n) for n in names}


def test_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_past_its_threshold_and_not_inside_it() -> None:
    # promtool's unit tests feed series just above and just below each audit threshold.
    result = run_promtool("test", "rules", "tests/warmup.rules.test.yml", cwd=str(PROMETHEUS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_is_valid_and_loads_the_rules() -> None:
    result = run_promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_every_audit_metric_has_its_alert_and_threshold() -> None:
    alerts = _alerts()
    for metric, (alert, threshold) in AUDIT_THRESHOLDS.items():
        assert alert in alerts, f"no alert {alert} for {metric}"
        expr = str(alerts[alert]["expr"])
        assert metric in _metric_names(expr), f"{alert} does not read {metric}"
        assert re.search(rf"(?<![\d.]){re.escape(threshold)}(?![\d.])", expr), (
            f"{alert}: threshold {threshold}"
        )


def test_rules_and_dashboard_read_only_metrics_the_workers_serve() -> None:
    served = {m.name for m in metrics.ALL}
    used: set[str] = set()
    for alert in _alerts().values():
        used |= _metric_names(str(alert["expr"]))
    for expr in _exprs():
        used |= _metric_names(expr)
    assert used <= served, f"not served by any worker: {sorted(used - served)}"
    assert set(metrics.AUDIT_SIX) <= used


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no query checker, but it parses every recording rule's expression.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(_exprs())],
            }
        ]
    }
    file = tmp_path / "dashboard.rules.yml"
    file.write_text(yaml.safe_dump(rules))
    result = run_promtool("check", "rules", str(file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_shows_sends_fill_errors_and_backlog_from_the_provisioned_source() -> None:
    dash = _dashboard()
    source = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    by_metric: dict[str, list[str]] = {}
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]
            for name in _metric_names(target["expr"]):
                by_metric.setdefault(name, []).append(panel["title"])
    for metric in (
        "warmup_emails_sent_total",
        "warmup_quota_fill_rate_per_mailbox",
        "warmup_errors_per_hour",
        "warmup_queue_depth",
    ):
        assert metric in by_metric, f"the dashboard has no panel for {metric}"
    sends = [p for p in dash["panels"] if "warmup_emails_sent_total[1h]" in json.dumps(p["targets"])]
    assert any("per hour" in p["title"] for p in sends), "sends per hour"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
