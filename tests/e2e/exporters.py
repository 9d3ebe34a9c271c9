"""Stand-ins for the exporters of the non-default metrics sources, for the end-to-end chain.

`IngressNginxController` is a `DemoApp` (same traffic profiles, same `set()`, same background "requests") that
exposes what the ingress-nginx controller's /metrics does for one primary Ingress `{app}` with a canary Ingress
`{app}-canary` (alert-rules/sources/ingress-nginx.yaml names the version checked): the counter
`nginx_ingress_controller_requests` and the histogram `nginx_ingress_controller_request_duration_seconds`,
labels status, method, path, namespace, ingress, service, canary, host and the const labels controller_*.
Canary requests carry canary="<namespace>-<app>-canary-<port>", stable ones canary="". Like the controller, a
status series appears with the first request of that status.

The exposition is written by hand: prometheus_client would name the counter `..._total`, the controller (Go
client, CounterVec "requests") does not. The scrape target's labels are the controller Pod's (namespace
"ingress-nginx", service, pod), so Prometheus renames the metric's own `namespace`/`service` to
`exported_namespace`/`exported_service`, exactly as with the ingress-nginx chart's ServiceMonitor (honorLabels
false).
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from aiohttp import web

from .harness import NAMESPACE, DemoApp, TrafficProfile, _Track

CONTROLLER_NAMESPACE = "ingress-nginx"
# Prometheus' DefBuckets: the controller's default --time-buckets.
TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngressNginxController(DemoApp):
    """One controller Pod's /metrics for the Ingress `{app}` and its canary Ingress (see module doc)."""

    def __init__(
        self,
        *,
        canary: TrafficProfile,
        stable: TrafficProfile,
        namespace: str = NAMESPACE,
        app: str,
        pod_index: int = 0,
    ) -> None:
        super().__init__(canary=canary, stable=stable, namespace=namespace, app=app)
        self.pod = f"ingress-nginx-controller-6d4f8b7c9-{pod_index:05d}"
        self._requests: dict[tuple[str, str], int] = defaultdict(int)  # (canary label, status) -> count
        self._buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(TIME_BUCKETS) + 1))
        self._sums: dict[tuple[str, str], float] = defaultdict(float)
        for version in self.VERSIONS.values():
            self._requests[(self._canary_label(version), "200")] += 0  # as after the first healthy request

    @property
    def target_labels(self) -> dict[str, str]:
        return {"namespace": CONTROLLER_NAMESPACE, "service": "ingress-nginx-controller-metrics", "pod": self.pod}

    def _canary_label(self, version: str) -> str:
        return f"{self.namespace}-{self.app}-canary-80" if version == "canary" else ""

    def _observe(self, version: str, track: _Track, elapsed: float) -> None:
        profile = track.profile
        for failed in track.requests(elapsed):
            key = (self._canary_label(version), "503" if failed else "200")
            self._requests[key] += 1
            buckets = self._buckets[key]
            for index in range(bisect.bisect_left(TIME_BUCKETS, profile.latency), len(buckets)):
                buckets[index] += 1
            self._sums[key] += profile.latency

    def _labels(self, canary: str, status: str) -> str:
        labels = {
            "canary": canary,
            "controller_class": "k8s.io/ingress-nginx",
            "controller_namespace": CONTROLLER_NAMESPACE,
            "controller_pod": self.pod,
            "host": f"{self.app}.example.com",
            "ingress": self.app,
            "method": "GET",
            "namespace": self.namespace,
            "path": "/",
            "service": self.app,
            "status": status,
        }
        return ",".join(f'{key}="{value}"' for key, value in labels.items())

    def exposition(self) -> str:
        lines = [
            "# HELP nginx_ingress_controller_requests The total number of client requests",
            "# TYPE nginx_ingress_controller_requests counter",
            *(f"nginx_ingress_controller_requests{{{self._labels(*key)}}} {n}" for key, n in self._requests.items()),
            "# HELP nginx_ingress_controller_request_duration_seconds The request processing time in milliseconds",
            "# TYPE nginx_ingress_controller_request_duration_seconds histogram",
        ]
        histogram = "nginx_ingress_controller_request_duration_seconds"
        for key, buckets in self._buckets.items():
            labels = self._labels(*key)
            for bound, count in zip((*map(str, TIME_BUCKETS), "+Inf"), buckets, strict=True):
                lines.append(f'{histogram}_bucket{{{labels},le="{bound}"}} {count}')
            lines.append(f"{histogram}_sum{{{labels}}} {self._sums[key]}")
            lines.append(f"{histogram}_count{{{labels}}} {buckets[-1]}")
        return "\n".join(lines) + "\n"

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.exposition(), content_type="text/plain", charset="utf-8")
