"""Generate the promtool unit tests of the non-default sources (ingress-nginx, istio, contour).

One set of canary scenarios (the traffic of each track: requests per scrape, 5xx share, latency profile) is
written out in the metric names and label sets each source's exporter really emits: ingress-nginx's controller
(`nginx_ingress_controller_*`, the canary told by the `canary` label, controller and target labels around it),
Istio's server-side sidecars (`istio_*`, reporter="destination", with the client sidecars' reporter="source"
duplicates that must not count) and Contour's Envoy (`envoy_cluster_*` per Service cluster, latency in ms).
Every scenario therefore means the same in every source, and so must the alerts it fires: the expected alerts
are the same list for all sources. The annotations are rendered from canary-rules.yaml's templates (the app
source's hand-written tests check those texts literally).

A counter series is emitted only for the status codes a track served (exporters create a series with its first
increment), so a clean track has no 5xx series at all, as in a real cluster.

The files are written at check time, not kept in the repository (the istio one alone is ~10k lines of
series): alert-rules/check.sh writes them next to each source's hand-written tests (tests/<source>/*.yaml, if
any) and runs them. To read them: python alert-rules/tests/source_tests.py /tmp/source-tests

usage: source_tests.py OUT_DIR      writes OUT_DIR/<source>/source.yaml for every generated source
"""

from __future__ import annotations

import abc
import math
import pathlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import yaml

HERE = pathlib.Path(__file__).resolve().parent
RULES = HERE.parent / "canary-rules.yaml"
NS = "shop"
SAMPLES = 40  # every 15s: 10 minutes
# Bucket boundaries in seconds that ingress-nginx's default --time-buckets and Envoy's default histogram
# buckets (in ms) share; a latency profile puts observations into buckets ending at these bounds.
NGINX_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ENVOY_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
                    1800000, 3600000)  # fmt: skip

# Latency profiles: {upper bound in seconds: share of the requests in the bucket ending there}.
FAST = {0.25: 1.0}  # P95 0.1 + 0.95 * 0.15 = 0.2425 s
HALF = {0.5: 1.0}  # P95 0.4875 s = 2.01x FAST
SLOW = {1: 0.84, 2.5: 0.16}  # P95 1 + 1.5 * 0.11 / 0.16 = 2.031 s
ALMOST = {1: 0.86, 2.5: 0.14}  # P95 1 + 1.5 * 0.09 / 0.14 = 1.964 s


@dataclass(frozen=True)
class Track:
    per_scrape: float = 100.0  # requests per 15s: 100 is 6.67 req/s
    errors: float = 0.0  # 5xx share
    latency: dict[float, float] | None = None  # None: FAST
    version: str = "v1"  # what the stable Pods are labelled (istio); "" for no label


@dataclass(frozen=True)
class Scenario:
    app: str
    comment: str
    canary: Track | None
    stable: Track


SCENARIOS = (
    Scenario("err-above", "canary 6% 5xx, stable clean -> HighErrorRate, ErrorRateDivergence",
             Track(errors=0.06), Track()),
    Scenario("err-below", "canary 4.5% 5xx, stable clean (no 5xx series) -> ErrorRateDivergence only",
             Track(errors=0.045), Track()),
    Scenario("err-stable-only", "stable 20% 5xx, canary clean -> nothing",
             Track(), Track(errors=0.2, version="")),
    Scenario("err-low-traffic", "canary 50% 5xx at 0.9 req/s (below the gate) -> nothing",
             Track(per_scrape=13.5, errors=0.5), Track()),
    Scenario("div-above", "canary 4.5%, stable 1%: 3.5 points -> ErrorRateDivergence",
             Track(errors=0.045), Track(errors=0.01)),
    Scenario("div-below", "canary 3.9%, stable 1%: 2.9 points -> nothing",
             Track(errors=0.039), Track(errors=0.01)),
    Scenario("lat-above", "canary P95 2.031 s -> HighLatencyP95, LatencyDivergence",
             Track(latency=SLOW), Track()),
    Scenario("lat-below", "canary P95 1.964 s -> LatencyDivergence only (8.1x stable)",
             Track(latency=ALMOST), Track()),
    Scenario("ldiv-above", "canary P95 0.4875 s = 2.01x stable -> LatencyDivergence",
             Track(latency=HALF), Track()),
    Scenario("lat-stable-only", "stable P95 2.031 s, canary fast -> nothing",
             Track(), Track(latency=SLOW)),
    Scenario("idle", "canary series exist but serve nothing (0 req/s, 0 5xx/s, NaN ratio and P95) -> nothing",
             Track(per_scrape=0), Track()),
    Scenario("blind", "no canary series at all (stable 50% 5xx) -> nothing here, MetricsAbsent below",
             None, Track(errors=0.5)),
)  # fmt: skip

EXPECTED = {
    "CanaryHighErrorRate": ["err-above"],
    "CanaryErrorRateDivergence": ["err-above", "err-below", "div-above"],
    "CanaryHighLatencyP95": ["lat-above"],
    "CanaryLatencyDivergence": ["lat-above", "lat-below", "ldiv-above"],
}


# ---------------------------------------------------------------------------------------------- sources


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _series(name: str, labels: dict[str, str], per_scrape: float) -> dict[str, str]:
    return {"series": f"{name}{_labels(labels)}", "values": f"0+{_num(per_scrape)}x{SAMPLES}"}


def _num(value: float) -> str:
    return f"{value:.6g}"


def _responses(track: Track) -> Iterator[tuple[str, float]]:
    """(status, requests per scrape) for the statuses the track served; at least one series per track."""
    ok, failed = track.per_scrape * (1 - track.errors), track.per_scrape * track.errors
    if ok or not failed:
        yield "200", ok
    if failed:
        yield "503", failed


def _buckets(bounds_s: tuple[float, ...], profile: dict[float, float]) -> Iterator[tuple[float, float]]:
    """(bound in seconds, cumulative share) for each bound, +Inf as math.inf."""
    for bound in (*bounds_s, math.inf):
        yield bound, min(1.0, sum(share for upper, share in profile.items() if upper <= bound))


class Source(abc.ABC):
    """One metrics source: the series its exporter emits for a scenario's track (each subclass says which)."""

    name: str
    doc: str

    @abc.abstractmethod
    def series(self, scenario: Scenario, track_name: str, track: Track) -> Iterator[dict[str, str]]: ...

    def extra(self) -> Iterator[dict[str, str]]:
        return iter(())

    def absent_series(self, app: str) -> Iterator[dict[str, str]]:
        yield from self.series(Scenario(app, "", None, Track()), "stable", Track())


class IngressNginx(Source):
    name = "ingress-nginx"
    doc = """ingress-nginx controller: nginx_ingress_controller_requests and
# nginx_ingress_controller_request_duration_seconds_bucket, labels status, method, path, namespace, ingress,
# service, canary, host (metrics-per-host, the default) and the const labels controller_*; scraped from the
# controller Pods, so the target labels namespace/service/pod/... clash with the metric's and Prometheus keeps
# the metric's as exported_namespace/exported_service (honorLabels: false, the ingress-nginx chart's default).
# err-above is scraped with honorLabels: true instead (no exported_*), and split across two controller Pods.
# Canary requests carry canary="<namespace>-<canary Service>-<port>", stable ones canary="". Default buckets."""

    def _target(self, pod: str, honor: bool) -> dict[str, str]:
        return {
            "controller_class": "k8s.io/ingress-nginx",
            "controller_namespace": "ingress-nginx",
            "controller_pod": pod,
            "container": "controller",
            "endpoint": "metrics",
            "instance": "10.0.2.15:10254" if pod.endswith("abcde") else "10.0.2.16:10254",
            "job": "ingress-nginx-controller-metrics",
            **({} if honor else {"namespace": "ingress-nginx", "service": "ingress-nginx-controller-metrics"}),
            "pod": pod,
        }

    def series(self, scenario: Scenario, track_name: str, track: Track) -> Iterator[dict[str, str]]:
        honor = scenario.app == "err-above"
        pods = ["ingress-nginx-controller-6d4f8b7c9-abcde"]
        if honor:
            pods.append("ingress-nginx-controller-6d4f8b7c9-fghij")
        for pod in pods:
            share = 1 / len(pods)
            for status, per_scrape in _responses(track):
                request = {
                    "canary": f"{NS}-{scenario.app}-canary-80" if track_name == "canary" else "",
                    ("namespace" if honor else "exported_namespace"): NS,
                    ("service" if honor else "exported_service"): scenario.app,
                    "host": f"{scenario.app}.example.com",
                    "ingress": scenario.app,
                    "method": "GET",
                    "path": "/",
                    "status": status,
                    **self._target(pod, honor),
                }
                yield _series("nginx_ingress_controller_requests", request, per_scrape * share)
                for bound, cumulative in _buckets(NGINX_BUCKETS, track.latency or FAST):
                    le = "+Inf" if bound == math.inf else _num(bound)
                    yield _series(
                        "nginx_ingress_controller_request_duration_seconds_bucket",
                        {**request, "le": le},
                        per_scrape * share * cumulative,
                    )
                yield _series("nginx_ingress_controller_request_duration_seconds_count", request, per_scrape * share)

    def extra(self) -> Iterator[dict[str, str]]:
        # Requests no Ingress matched (the default backend's 404s and 503s): ingress and namespace "-".
        for status in ("404", "503"):
            labels = {"canary": "", "exported_namespace": "-", "exported_service": "-", "host": "unknown.example.com",
                      "ingress": "-", "method": "GET", "path": "-", "status": status,
                      **self._target("ingress-nginx-controller-6d4f8b7c9-abcde", False)}  # fmt: skip
            yield _series("nginx_ingress_controller_requests", labels, 50)


class Istio(Source):
    name = "istio"
    doc = """Istio sidecars: istio_requests_total and istio_request_duration_milliseconds_bucket
# (Envoy's default buckets, in ms), with the standard labels. Each request is reported twice: by the serving
# Pod's sidecar (reporter="destination", the series the rules read) and by the client's (reporter="source",
# scraped from the client Pod, which must not double the rate: err-low-traffic would pass the gate if it did).
# destination_version is the serving Pod's `version` label ("" when it has none: err-stable-only's stable).
# err-above is scraped by a job that adds no `namespace` target label: the namespace is destination_*'s."""

    def series(self, scenario: Scenario, track_name: str, track: Track) -> Iterator[dict[str, str]]:
        version = "canary" if track_name == "canary" else track.version
        workload = f"{scenario.app}-canary" if track_name == "canary" else scenario.app
        for reporter in ("destination", "source"):
            pod = f"{workload}-7b9c6d5f4-q2w3e" if reporter == "destination" else "frontend-5c6d7e8f9-a1b2c"
            for status, per_scrape in _responses(track):
                labels = {
                    "connection_security_policy": "mutual_tls" if reporter == "destination" else "unknown",
                    "destination_app": scenario.app,
                    "destination_canonical_revision": version or "latest",
                    "destination_canonical_service": scenario.app,
                    "destination_cluster": "Kubernetes",
                    "destination_principal": f"spiffe://cluster.local/ns/{NS}/sa/{scenario.app}",
                    "destination_service": f"{scenario.app}.{NS}.svc.cluster.local",
                    "destination_service_name": scenario.app,
                    "destination_service_namespace": NS,
                    "destination_version": version,
                    "destination_workload": workload,
                    "destination_workload_namespace": NS,
                    "grpc_response_status": "",
                    "reporter": reporter,
                    "request_protocol": "http",
                    "response_code": status,
                    "response_flags": "-",
                    "source_app": "frontend",
                    "source_canonical_revision": "v1",
                    "source_canonical_service": "frontend",
                    "source_cluster": "Kubernetes",
                    "source_principal": f"spiffe://cluster.local/ns/{NS}/sa/frontend",
                    "source_version": "v1",
                    "source_workload": "frontend",
                    "source_workload_namespace": NS,
                    # target labels of the scraped Pod (the merged Prometheus endpoint of the sidecar)
                    "instance": "10.1.4.7:15020" if reporter == "destination" else "10.1.4.9:15020",
                    "job": "kubernetes-pods",
                    "pod": pod,
                }
                if scenario.app != "err-above":  # err-above: a scrape job that adds no namespace target label
                    labels["namespace"] = NS
                yield _series("istio_requests_total", labels, per_scrape)
                for bound, cumulative in _buckets(tuple(ms / 1000 for ms in ENVOY_BUCKETS_MS), track.latency or FAST):
                    le = "+Inf" if bound == math.inf else _num(bound * 1000)
                    yield _series(
                        "istio_request_duration_milliseconds_bucket", {**labels, "le": le}, per_scrape * cumulative
                    )


def _prometheus3_le(value: float) -> str:
    """`le` as Prometheus 3 stores it (normalised on ingestion): "2500.0", "0.5", "1.8e+06"."""
    text = f"{value:g}"
    return text if "." in text or "e" in text else f"{text}.0"


class Contour(Source):
    name = "contour"
    doc = """Contour's Envoy: envoy_cluster_upstream_rq_xx (envoy_response_code_class) and
# envoy_cluster_upstream_rq_time_bucket (Envoy's default buckets, in ms), one cluster per Service and port,
# envoy_cluster_name "<namespace>_<service>_<port>"; the canary is the Service `{app}-canary`. Envoy runs as a
# DaemonSet: err-above's requests are split across two Envoy Pods. Contour's own clusters are unrelated. `le` is
# written as Prometheus 3 stores it ("1000.0", "1.8e+06"), the istio tests as Prometheus 2 does ("1000")."""

    def _target(self, pod: str) -> dict[str, str]:
        ip = "10.0.5.21" if pod.endswith("x7k2p") else "10.0.5.22"
        return {"container": "envoy", "endpoint": "metrics", "instance": f"{ip}:8002", "job": "envoy",
                "namespace": "projectcontour", "pod": pod}  # fmt: skip

    def series(self, scenario: Scenario, track_name: str, track: Track) -> Iterator[dict[str, str]]:
        service = f"{scenario.app}-canary" if track_name == "canary" else scenario.app
        pods = ["envoy-x7k2p"] + (["envoy-m4n8q"] if scenario.app == "err-above" else [])
        for pod in pods:
            share = 1 / len(pods)
            cluster = {"envoy_cluster_name": f"{NS}_{service}_80", **self._target(pod)}
            for status, per_scrape in _responses(track):
                yield _series(
                    "envoy_cluster_upstream_rq_xx",
                    {**cluster, "envoy_response_code_class": status[0]},
                    per_scrape * share,
                )
            for bound, cumulative in _buckets(tuple(ms / 1000 for ms in ENVOY_BUCKETS_MS), track.latency or FAST):
                le = "+Inf" if bound == math.inf else _prometheus3_le(bound * 1000)
                yield _series(
                    "envoy_cluster_upstream_rq_time_bucket",
                    {**cluster, "le": le},
                    track.per_scrape * share * cumulative,
                )

    def extra(self) -> Iterator[dict[str, str]]:
        # Contour's own clusters (xDS, the stats listener): not Services, never compared with anything.
        for cluster in ("contour", "envoy-admin"):
            labels = {"envoy_cluster_name": cluster, **self._target("envoy-x7k2p")}
            yield _series("envoy_cluster_upstream_rq_xx", {**labels, "envoy_response_code_class": "5"}, 10)


SOURCES: tuple[Source, ...] = (IngressNginx(), Istio(), Contour())


# ---------------------------------------------------------------------------------------------- tests


def _annotations(alert: dict, *, app: str, value: float) -> dict[str, str]:
    """canary-rules.yaml's annotation templates rendered for one alert (the functions the rules use)."""
    renderers: dict[str, Callable[[float], str]] = {
        r"\$value \| humanizePercentage": lambda v: f"{v * 100:.4g}%",
        r"\$value \| humanizeDuration": lambda v: f"{v:.4g}s",
        r'\$value \| printf "%.2f"': lambda v: f"{v:.2f}",
        r"\$value": lambda v: f"{v:.15g}",
    }
    out = {}
    for key, text in alert["annotations"].items():
        text = text.replace("{{ $labels.namespace }}", NS).replace("{{ $labels.app }}", app)
        for pattern, render in renderers.items():
            text = re.sub(r"\{\{ " + pattern + r" \}\}", render(value), text)
        out[key] = text.strip()
    return out


def _p95(profile: dict[float, float]) -> float:
    bounds = sorted({0.0, *NGINX_BUCKETS})
    below = 0.0
    for lower, upper in zip(bounds, bounds[1:], strict=False):
        share = profile.get(upper, 0.0)
        if below + share >= 0.95:
            return lower + (upper - lower) * (0.95 - below) / share
        below += share
    raise ValueError(profile)


def _value(alertname: str, scenario: Scenario) -> float:
    canary, stable = scenario.canary, scenario.stable
    assert canary is not None
    if alertname == "CanaryHighErrorRate":
        return canary.errors
    if alertname == "CanaryErrorRateDivergence":
        return canary.errors - stable.errors
    if alertname == "CanaryHighLatencyP95":
        return _p95(canary.latency or FAST)
    return _p95(canary.latency or FAST) / _p95(stable.latency or FAST)


def _alert_tests(alerts: dict[str, dict]) -> list[dict]:
    by_app = {s.app: s for s in SCENARIOS}
    tests = []
    for alertname, apps in EXPECTED.items():
        alert = alerts[alertname]
        fired = [
            {
                "exp_labels": {"alertname": alertname, "namespace": NS, "app": app, **alert["labels"]},
                "exp_annotations": _annotations(alert, app=app, value=_value(alertname, by_app[app])),
            }
            for app in apps
        ]
        tests.append({"alertname": alertname, "eval_time": "3m", "exp_alerts": fired})
    return tests


P95 = "namespace_app_track:http_request_duration_seconds:p95_rate1m"


def _semantics_tests() -> list[dict]:
    """What "no traffic" means, the same for every source (sources/app.yaml)."""
    idle = f'namespace="{NS}", app="idle", track="canary"'
    fast = f'namespace="{NS}", app="lat-below", track="stable"'
    slow = f'namespace="{NS}", app="lat-above", track="canary"'
    return [
        {"expr": 'namespace_app_track:http_requests:rate1m{app="idle"}', "eval_time": "3m", "exp_samples": [
            {"labels": f"namespace_app_track:http_requests:rate1m{{{idle}}}", "value": 0},
            {"labels": f'namespace_app_track:http_requests:rate1m{{namespace="{NS}", app="idle", track="stable"}}',
             "value": 6.666666666666667},
        ]},
        {"expr": f"namespace_app_track:http_requests_5xx:rate1m{{{idle}}}", "eval_time": "3m",
         "exp_samples": [{"labels": f"namespace_app_track:http_requests_5xx:rate1m{{{idle}}}", "value": 0}]},
        # NaN is the only value that is not equal to itself.
        {"expr": f"namespace_app_track:http_requests_5xx:ratio_rate1m{{{idle}}} != bool "
                 f"namespace_app_track:http_requests_5xx:ratio_rate1m{{{idle}}}",
         "eval_time": "3m", "exp_samples": [{"labels": f"{{{idle}}}", "value": 1}]},
        {"expr": f"namespace_app_track:http_request_duration_seconds:p95_rate1m{{{idle}}} != bool "
                 f"namespace_app_track:http_request_duration_seconds:p95_rate1m{{{idle}}}",
         "eval_time": "3m", "exp_samples": [{"labels": f"{{{idle}}}", "value": 1}]},
        # No canary series: no data (not 0), for requests and 5xx alike.
        {"expr": 'namespace_app_track:http_requests:rate1m{app="blind", track="canary"}', "eval_time": "3m",
         "exp_samples": []},
        {"expr": 'namespace_app_track:http_requests_5xx:rate1m{app="blind", track="canary"}', "eval_time": "3m",
         "exp_samples": []},
        # Only apps: no "{app}-canary" app made of canary series counted as a stable of their own.
        {"expr": 'namespace_app_track:http_requests:rate1m{app=~".+-canary"}', "eval_time": "3m", "exp_samples": []},
        # A stable that never failed has a 5xx rate of 0, not no data.
        {"expr": f"namespace_app_track:http_requests_5xx:rate1m{{{fast}}}", "eval_time": "3m",
         "exp_samples": [{"labels": f"namespace_app_track:http_requests_5xx:rate1m{{{fast}}}", "value": 0}]},
        # P95 in seconds, whatever unit the source's buckets are in (to 1e-9: the bucket rates are sums of floats).
        *[
            {"expr": f"abs({P95}{{{labels}}} - {p95}) < bool 1e-9",
             "eval_time": "3m", "exp_samples": [{"labels": f"{{{labels}}}", "value": 1}]}
            for labels, p95 in ((slow, 2.03125), (fast, 0.2425))
        ],
    ]  # fmt: skip


def _absent_test(source: Source, alerts: dict[str, dict]) -> dict:
    """blind: canary enabled, no canary series; err-stable-only: canary enabled and seen, stable failing."""
    deployments = [
        {"series": f'kube_deployment_status_replicas_available{{namespace="{NS}", deployment="{app}-canary"}}',
         "values": f"{replicas}+0x{SAMPLES}"}
        for app, replicas in (("blind", 3), ("err-stable-only", 2))
    ]  # fmt: skip
    scenarios = [s for s in SCENARIOS if s.app in ("blind", "err-stable-only")]
    series = deployments + [x for s in scenarios for x in _scenario_series(source, s)]
    alert = alerts["CanaryMetricsAbsent"]
    absent = {
        "exp_labels": {"alertname": "CanaryMetricsAbsent", "namespace": NS, "app": "blind", **alert["labels"]},
        "exp_annotations": _annotations(alert, app="blind", value=3),
    }
    return {
        "name": f"{source.name}: an enabled canary without canary series -> MetricsAbsent, never a rollback",
        "interval": "15s",
        "input_series": series,
        "alert_rule_test": [
            {"alertname": "CanaryMetricsAbsent", "eval_time": "4m", "exp_alerts": []},
            {"alertname": "CanaryMetricsAbsent", "eval_time": "6m", "exp_alerts": [absent]},
            *[{"alertname": name, "eval_time": "6m", "exp_alerts": []} for name in EXPECTED],
        ],
    }


def _scenario_series(source: Source, scenario: Scenario) -> list[dict[str, str]]:
    tracks = [("stable", scenario.stable)] + ([("canary", scenario.canary)] if scenario.canary else [])
    return [s for name, track in tracks for s in source.series(scenario, name, track)]


def document(source: Source, alerts: dict[str, dict]) -> dict:
    series = [s for scenario in SCENARIOS for s in _scenario_series(source, scenario)] + list(source.extra())
    return {
        "rule_files": [f"../../rules/{source.name}.yaml"],
        "evaluation_interval": "15s",
        "tests": [
            {
                "name": f"{source.name}: thresholds, divergence, traffic gate, stable-only failures, no traffic",
                "interval": "15s",
                "input_series": series,
                "promql_expr_test": _semantics_tests(),
                "alert_rule_test": _alert_tests(alerts),
            },
            _absent_test(source, alerts),
        ],
    }


def render(source: Source) -> str:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r for g in rules["spec"]["groups"] for r in g["rules"] if "alert" in r}
    header = [
        "# GENERATED by alert-rules/tests/source_tests.py from its scenarios (alert-rules/check.sh runs it).",
        f"# promtool unit tests of source `{source.name}` (sources/{source.name}.yaml combined with",
        "# canary-rules.yaml, written by alert-rules/check.sh to ../../rules/). Samples every 15s; counters grow by",
        "# a fixed amount per sample, so each 1m rate is exact (100 per 15s = 6.67 req/s).",
        "#",
        f"# Series: {source.doc}",
        "#",
        f'# Scenarios, one app each in namespace "{NS}":',
        *[f"#   {s.app:<16} {s.comment}" for s in SCENARIOS],
    ]
    body = yaml.safe_dump(document(source, alerts), sort_keys=False, width=200)
    return "\n".join(header) + "\n" + body


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = pathlib.Path(argv[1])
    for source in SOURCES:
        (out / source.name).mkdir(parents=True, exist_ok=True)
        (out / source.name / "source.yaml").write_text(render(source))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
