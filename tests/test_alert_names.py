"""Every series the shipped alert rules and dashboards ask for is one the probe exports.

An alert on a metric nobody exports never fires; promtool cannot tell (a rule over an
absent series is valid), so this reads the selectors out of ``conf/prometheus/alerts.yml``
and looks each up, with its label values, in a fresh probe's exposition."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from probepair.metrics import Metrics

ALERTS = Path(__file__).resolve().parents[1] / "conf" / "prometheus" / "alerts.yml"
SELECTOR = re.compile(r"\b(probepair_[a-z_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def _exported() -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets it is exported with."""
    samples: dict[str, list[dict[str, str]]] = {}
    metrics = Metrics()
    metrics.set_info("standard", "node")  # set at start; "standard" is one of its modes
    text = metrics.exposition().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


def _expressions() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def test_every_alert_selector_names_an_exported_series_and_label_value() -> None:
    exported = _exported()
    checked = 0
    for expr in _expressions():
        for name, matchers in SELECTOR.findall(expr):
            assert name in exported, f"{name!r} in {expr!r} is not exported"
            for label, op, value in MATCHER.findall(matchers):
                present = {key for labels in exported[name] for key in labels}
                assert label in present, f"{name} has no label {label!r} ({expr!r})"
                if op != "=" or name == "probepair_info":
                    continue  # probepair_info's values describe the probe: set at start
                values = {labels.get(label) for labels in exported[name]}
                assert value in values, f"{name}{{{label}={value!r}}}: not among {values}"
            checked += 1
    assert checked >= 10  # the file has a dozen alerts: the parse did not come up empty


def test_a_misspelt_selector_would_fail() -> None:
    # The check above can fail: a name the probe does not export is not found.
    assert "probepair_hearbeats_rejected_total" not in _exported()
