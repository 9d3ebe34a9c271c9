"""The whole chain on a non-default metrics source: ingress-nginx controller metrics -> Prometheus (canary-rules.yaml
with sources/ingress-nginx.yaml, test timing) -> Alertmanager (shipped route) -> canary-responder -> emulator.

The scrape targets are stand-ins for ingress-nginx controller Pods (tests/e2e/exporters.py) emitting
`nginx_ingress_controller_requests` and `..._request_duration_seconds` with the controller's label sets; their
target labels are the controller Pod's, so Prometheus keeps the Ingress's namespace as `exported_namespace`,
as in a cluster. One Prometheus, Alertmanager, responder and emulated cluster serve the module:

  checkout  30% 5xx on the canary Ingress's traffic   -> rolled back by CanaryHighErrorRate, stable untouched
  reviews   0.4 requests/s at 50% 5xx on the canary   -> nothing fires (traffic gate), nothing rolls back
  cart      30% 5xx on stable only, canary healthy    -> nothing fires, nothing rolls back
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from .exporters import CONTROLLER_NAMESPACE, IngressNginxController
from .harness import NAMESPACE, Binaries, TrafficProfile
from .responder_chain import (
    World,
    canary_state,
    running_world,
)
from .test_chain_responder import (
    assert_stable_untouched,
    canary_objects_mutated,
    rolled_back,
    sel,
    until_query,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SOURCE = "ingress-nginx"
RATE_WINDOW_S = 10  # ChainTiming.rate_window
ERROR_APP, LOW_TRAFFIC_APP, STABLE_FAILS_APP = "checkout", "reviews", "cart"


def controllers() -> dict[str, IngressNginxController]:
    healthy = TrafficProfile(rps=20)
    return {
        ERROR_APP: IngressNginxController(canary=healthy, stable=healthy, app=ERROR_APP, pod_index=1),
        LOW_TRAFFIC_APP: IngressNginxController(
            canary=TrafficProfile(rps=0.4, error_ratio=0.5), stable=healthy, app=LOW_TRAFFIC_APP, pod_index=2
        ),
        STABLE_FAILS_APP: IngressNginxController(
            canary=healthy, stable=TrafficProfile(rps=20, error_ratio=0.3), app=STABLE_FAILS_APP, pod_index=3
        ),
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, e2e_binaries: Binaries) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("chain-ingress-nginx")
    demos = dict(controllers())
    async with running_world(workdir, demos, persist_for="12s", binaries=e2e_binaries, rules_source=SOURCE) as world:
        yield world


@pytest.fixture(autouse=True)
def _show_logs_on_failure(world: World, attach_logs_on_failure: Callable[[Callable[[], str]], None]) -> None:
    attach_logs_on_failure(world.logs)


async def warm(world: World, app: str) -> None:
    """A full rate window of scrapes of the app's controller Pod, and both tracks recorded."""
    pod = world.demos[app].target_labels["pod"]
    await until_query(
        world.chain, f'count_over_time(up{{pod="{pod}"}}[{RATE_WINDOW_S}s]) >= {RATE_WINDOW_S}', timeout=30
    )
    for track in ("canary", "stable"):
        await until_query(world.chain, f"namespace_app_track:http_requests:rate1m{sel(app, track)}", timeout=10)


async def test_the_controllers_labels_map_onto_the_normalised_series(world: World) -> None:
    await warm(world, ERROR_APP)
    chain = world.chain
    # What Prometheus stored: the Ingress's namespace renamed, the controller Pod's namespace in its place.
    raw = await chain.query(f'nginx_ingress_controller_requests{{ingress="{ERROR_APP}", canary!=""}}')
    assert raw and {s["metric"]["exported_namespace"] for s in raw} == {NAMESPACE}
    assert {s["metric"]["namespace"] for s in raw} == {CONTROLLER_NAMESPACE}
    # What the rules recorded from it: per Ingress namespace and app, both tracks, a 5xx rate of 0 (no 503 series
    # exists yet) and a P95 in seconds.
    for track in ("canary", "stable"):
        assert await chain.value(f"namespace_app_track:http_requests:rate1m{sel(ERROR_APP, track)}") > 10
        assert await chain.value(f"namespace_app_track:http_requests_5xx:ratio_rate1m{sel(ERROR_APP, track)}") == 0
        p95 = await chain.value(f"namespace_app_track:http_request_duration_seconds:p95_rate1m{sel(ERROR_APP, track)}")
        assert p95 is not None and 0.025 < p95 <= 0.05  # 50 ms requests, buckets 0.025 and 0.05


async def test_thin_canary_traffic_and_a_failing_stable_fire_nothing(world: World) -> None:
    chain = world.chain
    ratio = "namespace_app_track:http_requests_5xx:ratio_rate1m"
    await until_query(
        chain,
        f"{ratio}{sel(LOW_TRAFFIC_APP, 'canary')} > 0.05 and "
        f"namespace_app_track:http_requests:rate1m{sel(LOW_TRAFFIC_APP, 'canary')} < 1",
        timeout=30,
    )
    await until_query(chain, f"{ratio}{sel(STABLE_FAILS_APP, 'stable')} > 0.2", timeout=30)
    # Long enough for a breach to go pending, fire and be delivered (about 5 s at this timing), with margin.
    watch_until = time.monotonic() + 8
    while time.monotonic() < watch_until:
        assert await chain.query(f'ALERTS{{app=~"{LOW_TRAFFIC_APP}|{STABLE_FAILS_APP}"}}') == []
        await asyncio.sleep(0.5)


async def test_error_rate_breach_on_the_canary_ingress_rolls_back(world: World) -> None:
    app = ERROR_APP
    await warm(world, app)
    world.demos[app].set(canary=TrafficProfile(rps=20, error_ratio=0.3))
    intent = await rolled_back(world, app, timeout=30)
    assert intent["alert"] == "CanaryHighErrorRate"
    # Canary traffic off first, then the canary scaled to zero; nothing else of the app touched.
    assert canary_state(world.emulator, NAMESPACE, app) == ("false", 0)
    assert canary_objects_mutated(world, app) == [
        ("Ingress", f"{app}-canary", None),
        ("Deployment", f"{app}-canary", "scale"),
    ]
    [acting] = [d for d in world.audit.decisions(app) if d["outcome"] == "rollback"]
    assert acting["alertname"] == "CanaryHighErrorRate" and acting["incident"] == intent["incident"]
    assert_stable_untouched(world, app)


async def test_nothing_else_was_touched(world: World) -> None:
    for app in (LOW_TRAFFIC_APP, STABLE_FAILS_APP):
        assert world.audit.alerts(app) == []
        assert [m for m in world.emulator.mutations if m.name in (app, f"{app}-canary")] == []
        assert_stable_untouched(world, app)
    assert_stable_untouched(world, ERROR_APP)
    for app in (LOW_TRAFFIC_APP, STABLE_FAILS_APP):
        assert await world.chain.query(f'count_over_time(ALERTS{{app="{app}"}}[5m])') == []
