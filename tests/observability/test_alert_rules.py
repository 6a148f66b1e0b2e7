"""ops/prometheus/alerts.yml: a well-formed Prometheus rules file whose expressions name only
series that /metrics exports (promtool is not on the machines; this reads it as Prometheus
would: YAML, then the names in each expression)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from refit.metrics import DATABASE_SERIES

RULES = Path(__file__).resolve().parents[2] / "ops" / "prometheus" / "alerts.yml"
# The pager's list (issue 15): each is watched by at least one rule, by its series.
WATCHED = {
    "worker not alive": "refit_workers_alive",
    "queue depth": "refit_queue_jobs",
    "label failures": 'task="shipping.purchase_label", outcome="failed"',
    "payout failures": 'refit_payouts{status="failed"}',
    "treasury low": "refit_payouts_treasury_too_low",
    "treasury below a day of payouts": "refit_treasury_balance_lamports",
    "the last week's daily payouts": "refit_payouts_daily_average_lamports",
    "error rate": 'status=~"5.."',
    "sanctions list stale": "refit_sanctions_list_age_seconds",
    "sanctions hits": "refit_sanctions_hits_total",
}
DURATION = re.compile(r"^\d+[smhd]$")
# Prometheus's own series, present for every scrape target.
BUILT_IN = {"up"}


def _rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    rules = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"]
        rules.extend(group["rules"])
    return rules


def _series_named(expr: str) -> set[str]:
    # Label matchers and quoted strings hold values, not series names.
    bare = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]", " ", expr)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare))
    return {name for name in names if name.startswith("refit_") or name in BUILT_IN}


def _exported_by_the_code() -> set[str]:
    """Every sample name the process's counters and histograms can expose, observed or not."""
    names = set(DATABASE_SERIES)
    for family in REGISTRY.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
        }.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


async def test_the_rules_file_parses_and_names_only_series_we_export(client):
    rules = _rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) and all(re.fullmatch(r"Refit[A-Za-z]+", n) for n in names)
    exported = _exported_by_the_code() | BUILT_IN
    # The database series are really in a scrape (the app here reads its own test database).
    exposition = (await client.get("/metrics")).text
    for name in DATABASE_SERIES:
        assert f"# TYPE {name} gauge" in exposition, name

    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        expr = rule["expr"]
        assert isinstance(expr, str) and expr.strip()
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
        assert "for" not in rule or DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"page", "warn"}
        assert rule["annotations"]["summary"]
        named = _series_named(expr)
        assert named, f"{rule['alert']} watches no series"
        assert named <= exported, f"{rule['alert']} names {named - exported}, not exported"

    for what, series in WATCHED.items():
        assert any(series in rule["expr"] for rule in rules), f"no rule for {what}"
