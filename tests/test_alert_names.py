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


# -- the scrape config and the rules' unit tests -------------------------------------

PROMETHEUS = ALERTS.with_name("prometheus.yml")
ALERTS_TEST = ALERTS.with_name("alerts_test.yml")
# Labels Prometheus itself puts on every scraped series.
SCRAPE_LABELS = {"job", "instance"}
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
JOB = re.compile(r'\bjob\s*=\s*"([^"]*)"')


def scrape_config_problems(config: dict, rules: list[str]) -> list[str]:
    """What in a scrape config would leave the rules ``rules`` without their series:
    rule files that are not there, a job the rules name that nothing scrapes, a target
    without the label the rules group by."""
    problems = []
    for name in config.get("rule_files") or []:
        if not (PROMETHEUS.parent / name).is_file():
            problems.append(f"rule file {name!r} does not exist beside {PROMETHEUS.name}")
    if ALERTS.name not in (config.get("rule_files") or []):
        problems.append(f"{ALERTS.name} is not among rule_files")
    jobs = {job["job_name"]: job for job in config.get("scrape_configs") or []}
    for expr in rules:
        for job in JOB.findall(expr):
            if job not in jobs:
                problems.append(f"job {job!r} ({expr.strip()!r}) is not scraped")
    target_labels = {
        label
        for job in jobs.values()
        for static in job.get("static_configs") or []
        for label in (static.get("labels") or {})
    }
    exported = {key for sets in _exported().values() for labels in sets for key in labels}
    for expr in rules:
        for group in GROUPING.findall(expr):
            for label in (x.strip() for x in group.split(",") if x.strip()):
                if label not in SCRAPE_LABELS | exported | target_labels:
                    problems.append(f"{label!r} in {expr.strip()!r}: no target carries it")
    for name, job in jobs.items():
        for static in job.get("static_configs") or []:
            labels = static.get("labels") or {}
            for group_label in target_labels - labels.keys():
                problems.append(f"job {name!r}: targets {static.get('targets')} have no "
                                f"{group_label!r} label: the pair-wide alerts miss them")
    return problems


def test_the_scrape_config_feeds_the_rules_it_loads() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert scrape_config_problems(config, _expressions()) == []
    assert [job["job_name"] for job in config["scrape_configs"]] == ["probepair"]


def test_a_scrape_config_that_starves_the_rules_is_refused() -> None:
    # The check above can fail: each of these breaks one alert or all of them.
    good = yaml.safe_load(PROMETHEUS.read_text())
    rules = _expressions()
    renamed = yaml.safe_load(PROMETHEUS.read_text())
    renamed["scrape_configs"][0]["job_name"] = "probes"
    assert any("job 'probepair'" in p for p in scrape_config_problems(renamed, rules))
    unlabelled = yaml.safe_load(PROMETHEUS.read_text())
    unlabelled["scrape_configs"][0]["static_configs"][0].pop("labels")
    assert any("'pair'" in p for p in scrape_config_problems(unlabelled, rules))
    no_rules = dict(good, rule_files=["alert.yml"])
    assert len(scrape_config_problems(no_rules, rules)) == 2


SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$")


def test_the_rules_unit_tests_feed_series_the_probe_exports() -> None:
    # promtool's tests of alerts.yml pass on whatever series they invent; a name or a
    # label the probe does not export would make them prove nothing about a real pair.
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    assert doc["rule_files"] == [ALERTS.name]
    exported = _exported()
    seen = set()
    for case in doc["tests"]:
        for series in case["input_series"]:
            match = SERIES.match(series["series"])
            assert match, series["series"]
            name, matchers = match.groups()
            labels = dict((k, v) for k, _, v in MATCHER.findall(matchers or ""))
            if name == "up":
                continue  # Prometheus' own series of each target (other jobs' too)
            # Shaped as the scrape config makes them: job probepair, a pair label.
            assert labels.get("job") == "probepair" and "pair" in labels, series["series"]
            assert name in exported, f"{name!r} in {ALERTS_TEST.name} is not exported"
            keys = {key for sets in exported[name] for key in sets}
            extra = labels.keys() - keys - SCRAPE_LABELS - {"pair"}
            assert not extra, f"{series['series']}: the probe exports no label {extra}"
            seen.add(name)
    assert len(seen) >= 6  # the parse did not come up empty
