"""The whole chain with the real responder at its end: demo apps -> Prometheus (shipped rules, test timing) ->
Alertmanager (shipped route) -> canary-responder (in-process, loopback) -> Kubernetes API emulator.

One Prometheus, one Alertmanager, one responder and one emulated cluster are shared by the module; every
scenario has its own canary (its own `app` label, demo app and stable/canary objects), so the scenarios do not
see each other's alerts, decisions or objects:

  checkout  error-rate breach (30% 5xx)            -> rolled back; traffic then stops, the alert resolves and the
                                                     resolution is recorded
  search    P95 breach (3 s)                        -> rolled back (CanaryHighLatencyP95 named in the audit trail)
  cart      divergence (3.5% vs 0% 5xx) that recovers before the responder's persist time -> PENDING, CANCELLED,
                                                     no rollback
  reviews   0.4 requests/s at 50% 5xx from the start -> nothing fires, nothing rolls back
and, across all of them, no stable Deployment or Ingress is ever mutated.

The demo apps' canary traffic follows the emulated cluster (`follow_cluster`): a canary whose Ingress is off
serves nothing more. The processes are stopped on every exit path (`run_chain`, `running_responder`,
`run_emulator` are context managers nested in the module fixture); on a failure the report shows the log tails
of Prometheus and Alertmanager and the responder's audit trail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from .harness import NAMESPACE, Binaries, Chain, DemoApp, TrafficProfile, parse_timestamp
from .responder_chain import (
    World,
    canary_state,
    running_world,
    stable_objects,
    until,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

# Long enough that a divergence which recovers at once is resolved well before it (about 7 s after startsAt,
# see test_divergence_that_recovers_in_time_is_not_rolled_back), short enough to wait out in the test.
PERSIST_FOR_S = 12
RATE_WINDOW_S = 10  # ChainTiming.rate_window

ERROR_APP, LATENCY_APP, DIVERGENCE_APP, LOW_TRAFFIC_APP = "checkout", "search", "cart", "reviews"


def demo_apps() -> dict[str, DemoApp]:
    healthy = TrafficProfile(rps=20)
    return {
        ERROR_APP: DemoApp(canary=healthy, stable=healthy, app=ERROR_APP),
        LATENCY_APP: DemoApp(canary=healthy, stable=healthy, app=LATENCY_APP),
        # More requests per window: the 3.5% divergence then stays clear of both 3 and 5% (one request more or
        # less in the window moves the ratio by 0.2 points instead of 0.5).
        DIVERGENCE_APP: DemoApp(canary=TrafficProfile(rps=50), stable=TrafficProfile(rps=50), app=DIVERGENCE_APP),
        LOW_TRAFFIC_APP: DemoApp(canary=TrafficProfile(rps=0.4, error_ratio=0.5), stable=healthy, app=LOW_TRAFFIC_APP),
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, e2e_binaries: Binaries) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("chain-responder")
    async with running_world(workdir, demo_apps(), persist_for=f"{PERSIST_FOR_S}s", binaries=e2e_binaries) as world:
        yield world


@pytest.fixture(autouse=True)
def _show_logs_on_failure(world: World, attach_logs_on_failure: Callable[[Callable[[], str]], None]) -> None:
    attach_logs_on_failure(world.logs)


# ---------------------------------------------------------------------------------------------- helpers


def sel(app: str, track: str) -> str:
    return f'{{namespace="{NAMESPACE}", app="{app}", track="{track}"}}'


async def until_query(chain: Chain, promql: str, *, timeout: float) -> None:
    """Wait until an instant query returns something (use a filtering expression)."""
    deadline = time.monotonic() + timeout
    while not await chain.query(promql):
        if time.monotonic() > deadline:
            raise AssertionError(f"still empty after {timeout}s: {promql}")
        await asyncio.sleep(0.25)


async def warm(world: World, app: str) -> None:
    """A full rate window of scrapes, both tracks above the traffic gate, and the canary error-free."""
    chain = world.chain
    await until_query(chain, f'count_over_time(up{{app="{app}"}}[{RATE_WINDOW_S}s]) >= {RATE_WINDOW_S}', timeout=30)
    for track in ("canary", "stable"):
        await until_query(chain, f"namespace_app_track:http_requests:rate1m{sel(app, track)} >= 1", timeout=10)
    await until_query(chain, f"namespace_app_track:http_requests_5xx:ratio_rate1m{sel(app, 'canary')} == 0", timeout=10)


def canary_objects_mutated(world: World, app: str) -> list[tuple[str, str | None, str | None]]:
    """(kind, name, subresource) of the successful Deployment/Ingress mutations of `app`'s objects, in order."""
    names = {app, f"{app}-canary"}
    return [
        (m.kind, m.name, m.subresource)
        for m in world.emulator.mutations
        if m.ok and m.kind in ("Deployment", "Ingress") and m.name in names
    ]


def assert_stable_untouched(world: World, app: str) -> None:
    assert [m for m in world.emulator.mutations if m.name == app] == []
    assert stable_objects(world.emulator, [world.demos[app]]) == {
        key: value for key, value in world.stable_before.items() if key[1] == app
    }


async def rolled_back(world: World, app: str, *, timeout: float) -> dict[str, Any]:
    """Wait for the rollback of `app`'s canary to finish; its rollback.intent audit entry."""
    target = f"{NAMESPACE}/{app}-canary"
    await until(
        lambda: world.audit.for_target(target, "rollback.result"), timeout=timeout, what=f"a rollback of {target}"
    )
    [intent] = world.audit.for_target(target, "rollback.intent")
    return intent


async def assert_rolled_back_by(world: World, app: str, alertname: str, *, timeout: float) -> None:
    intent = await rolled_back(world, app, timeout=timeout)
    target = f"{NAMESPACE}/{app}-canary"
    # The cluster: canary traffic off, canary at zero, traffic first; nothing else of this app touched.
    assert canary_state(world.emulator, NAMESPACE, app) == ("false", 0)
    assert canary_objects_mutated(world, app) == [
        ("Ingress", f"{app}-canary", None),
        ("Deployment", f"{app}-canary", "scale"),
    ]
    # The audit trail names the alert: in the rollback intent, the decision and the durable rollback record.
    assert intent["alert"] == alertname
    [acting] = [d for d in world.audit.decisions(app) if d["outcome"] == "rollback"]
    assert acting["alertname"] == alertname and acting["incident"] == intent["incident"]
    assert acting["policy"] == "rollback"
    [result] = world.audit.for_target(target, "rollback.result")
    assert result == {"incident": intent["incident"], "status": "done", "changed": True, "attempt": 0}
    steps = {d["step"]: d["result"] for d in world.audit.for_target(target, "action")}
    traffic_off = f"traffic_off:nginx/{app}-canary"
    # evidence: this emulator world has no canary pod objects, so there is nothing to capture
    assert steps == {"check": "done", traffic_off: "done", "evidence": "skipped", "scale_zero": "done", "event": "done"}
    [record] = [r for r in await world.responder.services.store.rollbacks() if r.key == target]
    assert record.status == "done" and record.cites[0]["alertname"] == alertname
    assert_stable_untouched(world, app)


# ---------------------------------------------------------------------------------------------- scenarios


async def test_error_rate_breach_turns_canary_off_and_the_resolution_is_recorded(world: World) -> None:
    app = ERROR_APP
    await warm(world, app)
    breach = time.time()
    world.demos[app].set(canary=TrafficProfile(rps=20, error_ratio=0.3))
    await assert_rolled_back_by(world, app, "CanaryHighErrorRate", timeout=30)

    [firing] = [a for a in world.audit.alerts(app) if a["labels"]["alertname"] == "CanaryHighErrorRate"]
    assert firing["status"] == "firing"
    assert firing["labels"] == {
        "alertname": "CanaryHighErrorRate",
        "namespace": NAMESPACE,
        "app": app,
        "severity": "critical",
        "action": "rollback",
    }
    assert parse_timestamp(firing["starts_at"]) > breach
    receipts = [e["data"] for e in world.audit.of_kind("receipt")]
    assert receipts and all(r["user_agent"].startswith("Alertmanager/") for r in receipts)

    # The canary now gets no traffic (the demo app follows the cluster), so the alert resolves in Prometheus,
    # Alertmanager sends the resolution, and the responder records it without acting.
    await until(
        lambda: "resolved" in world.audit.outcomes(app, alertname="CanaryHighErrorRate"),
        timeout=RATE_WINDOW_S + 30,
        what="the resolved CanaryHighErrorRate notification",
    )
    [resolved] = [
        a
        for a in world.audit.alerts(app)
        if a["labels"]["alertname"] == "CanaryHighErrorRate" and a["status"] == "resolved"
    ]
    assert resolved["fingerprint"] == firing["fingerprint"]
    assert resolved["ends_at"] is not None
    # Other alerts of this canary that fired meanwhile (the divergence) joined the rollback; no second rollback.
    assert world.audit.outcomes(app).count("rollback") == 1
    assert set(world.audit.outcomes(app)) <= {"rollback", "coalesced", "suppressed", "resolved", "duplicate"}
    assert len(canary_objects_mutated(world, app)) == 2


async def test_p95_breach_turns_canary_off(world: World) -> None:
    app = LATENCY_APP
    await warm(world, app)
    world.demos[app].set(canary=TrafficProfile(rps=20, latency=3.0))
    await assert_rolled_back_by(world, app, "CanaryHighLatencyP95", timeout=30)
    assert "CanaryHighErrorRate" not in {d["alertname"] for d in world.audit.decisions(app)}


async def test_divergence_that_recovers_in_time_is_not_rolled_back(world: World) -> None:
    app = DIVERGENCE_APP
    await warm(world, app)
    # 3.5% 5xx against stable's 0%: more than 3 points above stable, under the absolute 5% limit.
    world.demos[app].set(canary=TrafficProfile(rps=50, error_ratio=0.035))
    pending = await until(
        lambda: [d for d in world.audit.decisions(app) if d["outcome"] == "pending"],
        timeout=40,
        what="a PENDING decision on the divergence",
    )
    world.demos[app].set(canary=TrafficProfile(rps=50))  # recovers at once
    [decision] = pending
    assert decision["alertname"] == "CanaryErrorRateDivergence"
    assert decision["policy"] == "rollback-if-persists"
    deadline = parse_timestamp(decision["deadline"])
    [firing] = [a for a in world.audit.alerts(app) if a["status"] == "firing"]
    assert deadline == pytest.approx(parse_timestamp(firing["starts_at"]) + PERSIST_FOR_S, abs=0.01)

    await until(
        lambda: "cancelled" in world.audit.outcomes(app),
        timeout=max(1.0, deadline - time.time()) + 20,
        what="the divergence's resolution cancelling the pending rollback",
    )
    cancelled_at = time.time()
    assert cancelled_at < deadline, f"cancelled {cancelled_at - deadline:.1f}s after the deadline"
    assert world.audit.outcomes(app, alertname="CanaryErrorRateDivergence") == ["pending", "resolved", "cancelled"]

    # Past the deadline nothing happens: no rollback decision, no intent, the canary untouched.
    await asyncio.sleep(max(0.0, deadline - time.time()) + 2)
    assert "rollback" not in world.audit.outcomes(app)
    assert world.audit.for_target(f"{NAMESPACE}/{app}-canary", "rollback.intent") == []
    assert canary_state(world.emulator, NAMESPACE, app) == ("true", 2)
    assert canary_objects_mutated(world, app) == []
    assert_stable_untouched(world, app)


async def test_low_traffic_canary_at_high_error_ratio_never_rolls_back(world: World) -> None:
    app = LOW_TRAFFIC_APP
    chain = world.chain
    # The canary's 5xx ratio is far above 5% while it serves less than the traffic gate's 1 request/s ...
    await until_query(
        chain,
        f"namespace_app_track:http_requests_5xx:ratio_rate1m{sel(app, 'canary')} > 0.05"
        f" and namespace_app_track:http_requests:rate1m{sel(app, 'canary')} < 1",
        timeout=30,
    )
    # ... and has been for long enough that any rule could have gone pending, fired and been delivered
    # (breach -> webhook is about 4 s, the divergence's for: 2s included; see the smoke test).
    await asyncio.sleep(max(0.0, world.started + 2 * RATE_WINDOW_S - time.monotonic()))
    assert await chain.query(f"namespace_app_track:http_requests_5xx:ratio_rate1m{sel(app, 'canary')} > 0.05")
    # No canary alert for this app ever existed in Prometheus (not even pending) since the chain started.
    assert await chain.query(f'count_over_time(ALERTS{{app="{app}"}}[1h])') == []
    assert world.audit.alerts(app) == []
    assert canary_state(world.emulator, NAMESPACE, app) == ("true", 2)
    assert canary_objects_mutated(world, app) == []
    assert_stable_untouched(world, app)


async def test_no_stable_object_was_ever_mutated(world: World) -> None:
    """Across every scenario run so far: mutations only ever addressed canary objects (and their Events)."""
    for mutation in world.emulator.mutations:
        assert mutation.kind in ("Deployment", "Ingress", "Event"), mutation
        if mutation.kind != "Event":
            assert mutation.name is not None and mutation.name.endswith("-canary"), mutation
    assert stable_objects(world.emulator, world.demos.values()) == world.stable_before
    assert (await world.responder.services.store.verify()).ok
