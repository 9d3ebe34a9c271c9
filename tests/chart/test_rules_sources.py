"""The chart's PrometheusRule for every `rules.source`, and bring-your-own recording rules (`rules.source: custom`).

What the chart renders for a source must be exactly what alert-rules/check.sh tests: canary-rules.yaml with the
source's recording rules first in the alert group (`combined_spec` of alert-rules/extract_spec.py). On top of
the equality, the rendered rules themselves go through promtool: the source's unit tests (hand-written and
generated) run against the rendered spec and the rendered dashboard's queries, so a chart that rendered a stale
or wrong copy fails here too.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from conftest import CHART, ROOT, HelmFailed, Rendered

pytestmark = pytest.mark.slow

RULES_DIR = ROOT / "alert-rules"
SOURCES = sorted(p.stem for p in (RULES_DIR / "sources").glob("*.yaml"))
NORMALISED = (
    "namespace_app_track:http_requests:rate1m",
    "namespace_app_track:http_requests_5xx:rate1m",
    "namespace_app_track_le:http_request_duration_seconds_bucket:rate1m",
)


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"alert_rules_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


extract_spec = _module(RULES_DIR / "extract_spec.py")
check_dashboard = _module(RULES_DIR / "check_dashboard.py")
source_tests = _module(RULES_DIR / "tests" / "source_tests.py")


def _values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _expected(source: str) -> dict[str, Any]:
    rules = extract_spec.spec_of(RULES_DIR / "canary-rules.yaml")
    recording = extract_spec.source_rules(extract_spec.spec_of(RULES_DIR / "sources" / f"{source}.yaml"))
    return dict(extract_spec.combined_spec(rules, recording))


def _promtool_tests(rendered: Rendered, source: str, work: Path) -> subprocess.CompletedProcess[str]:
    """The source's promtool unit tests (generated and hand-written) against the rendered PrometheusRule's spec
    and the rendered dashboard's queries (tests/app/dashboard.yaml evaluates them)."""
    (work / "rules").mkdir(parents=True)
    rules = work / "rules" / f"{source}.yaml"
    rules.write_text(yaml.safe_dump(rendered.one("PrometheusRule")["spec"], sort_keys=False))
    [dashboard] = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    (work / "dashboard.json").write_text(dashboard["data"]["canary-deployment-comparison.json"])
    argv = ["check_dashboard", str(work / "dashboard.json"), str(work / "dashboard.yaml"), str(rules)]
    assert check_dashboard.main(argv) == 0
    tests = work / "tests" / source
    tests.mkdir(parents=True)
    for generated in source_tests.SOURCES:
        if generated.name == source:
            (tests / "source.yaml").write_text(source_tests.render(generated))
    for written in (RULES_DIR / "tests" / source).glob("*.yaml"):
        shutil.copy(written, tests)
    files = sorted(p.name for p in tests.glob("*.yaml"))
    assert files, f"no promtool tests for source {source}"
    return subprocess.run(["promtool", "test", "rules", *files], cwd=tests, capture_output=True, text=True, timeout=300)


def test_the_chart_offers_exactly_the_tested_sources() -> None:
    assert SOURCES == ["app", "contour", "ingress-nginx", "istio"]
    assert sorted(p.stem for p in (CHART / "files" / "sources").glob("*.yaml")) == SOURCES
    for source in SOURCES:
        copy, original = CHART / "files" / "sources" / f"{source}.yaml", RULES_DIR / "sources" / f"{source}.yaml"
        assert copy.read_bytes() == original.read_bytes(), f"{copy} differs: run bash scripts/chart-check.sh --sync"
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    assert schema["properties"]["rules"]["properties"]["source"]["enum"] == [*sorted(SOURCES, key=_order), "custom"]
    assert yaml.safe_load((CHART / "values.yaml").read_text())["rules"] == {"source": "app", "customRecordingRules": []}


def _order(source: str) -> int:
    return ["app", "ingress-nginx", "istio", "contour"].index(source)


@pytest.mark.parametrize("source", SOURCES)
def test_each_source_renders_the_tested_combination(
    render: Callable[..., Rendered], tmp_path: Path, source: str
) -> None:
    rendered = render(_values_file(tmp_path, {"rules": {"source": source}}))
    rule = rendered.one("PrometheusRule")
    assert rule["spec"] == _expected(source)
    assert rule["metadata"]["annotations"]["canary-responder.io/rules-source"] == source
    first = rule["spec"]["groups"][0]["rules"][:6]
    assert sorted(r["record"] for r in first) == sorted(NORMALISED * 2)
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed: the rendered rules were compared, not unit-tested")
    result = _promtool_tests(rendered, source, tmp_path / "promtool")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_default_source_is_app(render: Callable[..., Rendered]) -> None:
    assert render(None).one("PrometheusRule")["spec"] == _expected("app")


def test_a_wrong_source_copy_fails_the_unit_tests(render: Callable[..., Rendered], tmp_path: Path) -> None:
    """The promtool step above can fail: istio's rules read as if for ingress-nginx fire nothing they should."""
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    rendered = render(_values_file(tmp_path, {"rules": {"source": "ingress-nginx"}}))
    result = _promtool_tests(rendered, "istio", tmp_path / "promtool")
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


CUSTOM = [
    {
        "record": "namespace_app_track:http_requests:rate1m",
        "expr": 'sum by (namespace, app) (rate(myapp_requests_total{variant="b"}[1m]))',
        "labels": {"track": "canary"},
    },
    {
        "record": "namespace_app_track:http_requests:rate1m",
        "expr": 'sum by (namespace, app) (rate(myapp_requests_total{variant!="b"}[1m]))',
        "labels": {"track": "stable"},
    },
    {
        "record": "namespace_app_track:http_requests_5xx:rate1m",
        "expr": 'sum by (namespace, app) (rate(myapp_requests_total{variant="b", code=~"5.."}[1m]))'
        ' or 0 * sum by (namespace, app) (rate(myapp_requests_total{variant="b"}[1m]))',
        "labels": {"track": "canary"},
    },
    {
        "record": "namespace_app_track_le:http_request_duration_seconds_bucket:rate1m",
        "expr": 'sum by (namespace, app, le) (rate(myapp_latency_seconds_bucket{variant="b"}[1m]))',
        "labels": {"track": "canary"},
    },
]


def test_custom_recording_rules_go_first(render: Callable[..., Rendered], tmp_path: Path) -> None:
    rule = render(_values_file(tmp_path, {"rules": {"source": "custom", "customRecordingRules": CUSTOM}}))
    spec = rule.one("PrometheusRule")["spec"]
    assert spec == extract_spec.combined_spec(extract_spec.spec_of(RULES_DIR / "canary-rules.yaml"), CUSTOM)
    if shutil.which("promtool") is not None:
        (tmp_path / "custom.yaml").write_text(yaml.safe_dump(spec))
        check = subprocess.run(["promtool", "check", "rules", str(tmp_path / "custom.yaml")], capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("missing", NORMALISED)
def test_custom_rules_must_record_every_normalised_series(
    render: Callable[..., Rendered], tmp_path: Path, missing: str
) -> None:
    rules = [r for r in CUSTOM if r["record"] != missing]
    with pytest.raises(HelmFailed) as failure:
        render(_values_file(tmp_path, {"rules": {"source": "custom", "customRecordingRules": rules}}))
    assert f"rules.customRecordingRules must record {missing}" in str(failure.value)


def test_custom_without_rules_is_refused(render: Callable[..., Rendered], tmp_path: Path) -> None:
    with pytest.raises(HelmFailed) as failure:
        render(_values_file(tmp_path, {"rules": {"source": "custom"}}))
    assert "rules.customRecordingRules must record namespace_app_track:http_requests:rate1m" in str(failure.value)


def test_the_dashboards_lines_are_the_alerts_thresholds(render: Callable[..., Rendered]) -> None:
    """The 3-point, 1.5x, 5% and 512 MiB lines are where the alerts fire, not numbers of their own."""
    rendered = render(None)
    [configmap] = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    panels = {p["title"]: p for p in json.loads(configmap["data"]["canary-deployment-comparison.json"])["panels"]}
    alerts = {
        r["alert"]: r["expr"] for r in rendered.one("PrometheusRule")["spec"]["groups"][0]["rules"] if "alert" in r
    }

    def threshold(alert: str) -> float:
        match = re.search(r"\)\s*>\s*([0-9.* ]+)\n", alerts[alert])
        assert match, alerts[alert]
        return math.prod(float(factor) for factor in match.group(1).split("*"))

    def lines(title: str) -> list[float]:
        return [s["value"] for s in panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]

    assert lines("Error-rate divergence (canary − stable)") == [threshold("CanaryErrorRateDivergence")]
    assert lines("P95 ratio (canary ÷ stable)") == [threshold("CanaryLatencyDivergence")]
    assert lines("Canary error rate")[-1] == threshold("CanaryHighErrorRate")
    assert lines("Error rate (5xx ratio)") == [threshold("CanaryHighErrorRate")]
    assert lines("P95 latency") == [threshold("CanaryHighLatencyP95")]
    assert lines("Memory (working set)") == [threshold("CanaryHighMemory")]
    for title in ("Memory (working set)", "CPU"):
        assert all("pod=~" not in t["expr"] for t in panels[title]["targets"]), "tracks by label, not Pod names"
    [rollbacks] = [
        a
        for a in json.loads(configmap["data"]["canary-deployment-comparison.json"])["annotations"]["list"]
        if a["name"] == "Rollbacks"
    ]
    assert 'namespace="$namespace"' in rollbacks["expr"] and 'deployment="$app-canary"' in rollbacks["expr"]
