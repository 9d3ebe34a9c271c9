"""The Gateway API traffic step (HTTPRoute backendRef weights) through the real adapter against the emulator,
and through the whole responder: rollback, idempotence, conflict retry, failure before any mutation, restore."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import alert, notification, record_of, running_responder, write_config

from responder.adapters.kube import KubeCluster, open_cluster
from responder.core.model import FailureReason, Step, StepResult, TargetRef, TrafficRef
from responder.engine import restore_point
from responder.engine.executor import RetryPolicy, SafetyRules, StepOutcome, execute_restore, execute_rollback
from responder.testing.emulator import Emulator, SeedObject, run_emulator, sample_canary_objects

NS = "shop"
ROUTES = "gateway.networking.k8s.io/v1/httproutes"


def route_ref(name: str = "checkout", *, backend: str = "checkout-canary") -> TrafficRef:
    return TrafficRef("httproute", name, (("canary_backend", backend),))


def route_target(deployment: str = "checkout-canary", **ref: str) -> TargetRef:
    return TargetRef(namespace=NS, deployment=deployment, traffic=(route_ref(**ref),))


ROUTE = route_ref()
ROUTE_OFF = f"traffic_off:{ROUTE.key}"  # how the step is recorded: "traffic_off:httproute/checkout"
TARGET = route_target()
SAFETY = SafetyRules(allowed_namespaces=frozenset({NS}))
GATEWAY_TARGET = {  # the shorthand fields from before traffic references
    "name": "gateway",
    "namespace": "{namespace}",
    "deployment": "{app}-canary",
    "ingress": None,
    "httproute": "{app}",
    "canary_backend": "{app}-canary",
}
GATEWAY_TRAFFIC_TARGET = {
    "name": "gateway",
    "namespace": "{namespace}",
    "deployment": "{app}-canary",
    "traffic": [{"kind": "httproute", "name": "{app}", "canary_backend": "{app}-canary"}],
}


def route_object(app: str = "checkout", *, canary_weight: int | None = 10) -> SeedObject:
    canary: dict[str, Any] = {"name": f"{app}-canary", "port": 80}
    if canary_weight is not None:
        canary["weight"] = canary_weight
    body = {
        "metadata": {"name": app, "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "gateways"}],
            "hostnames": ["shop.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": app, "port": 80, "weight": 90}, canary],
                },
                {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}], "backendRefs": [{"name": "cdn"}]},
            ],
        },
    }
    return SeedObject(ROUTES, NS, app, body)


def weights(emu: Emulator, app: str = "checkout") -> list[int | None]:
    route = emu.get_object(ROUTES, NS, app)
    return [r.get("weight") for r in route["spec"]["rules"][0]["backendRefs"]]


@pytest.fixture
async def gw() -> AsyncIterator[tuple[Emulator, KubeCluster]]:
    async with run_emulator([*sample_canary_objects(NS, "checkout"), route_object()]) as (emu, url):
        cluster = await open_cluster(host=url)
        try:
            yield emu, cluster
        finally:
            await cluster.close()


async def rollback(cluster: KubeCluster, target: TargetRef = TARGET, **kwargs: Any) -> list[StepOutcome]:
    async def on_step(outcome: StepOutcome) -> None:
        pass

    async def no_sleep(_: float) -> None:
        pass

    return await execute_rollback(
        cluster, target, safety=SAFETY, retry=RetryPolicy(), on_step=on_step, sleep=no_sleep, **kwargs
    )


def results(outcomes: list[StepOutcome]) -> list[tuple[Step, StepResult]]:
    return [(o.step, o.result) for o in outcomes]


async def test_route_off_weights_the_canary_to_zero_before_the_scale_down(gw: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = gw
    outcomes = await rollback(cluster)
    assert results(outcomes) == [
        (Step.CHECK, StepResult.DONE),
        (Step.TRAFFIC_OFF, StepResult.DONE),
        (Step.SCALE_ZERO, StepResult.DONE),
        (Step.EVENT, StepResult.DONE),
    ]
    assert [o.id for o in outcomes] == ["check", ROUTE_OFF, "scale_zero", "event"]
    assert weights(emu) == [100, 0]
    route = emu.get_object(ROUTES, NS, "checkout")
    assert route["spec"]["rules"][1] == {
        "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
        "backendRefs": [{"name": "cdn"}],
    }  # other rules untouched
    assert route["spec"]["parentRefs"] and route["spec"]["hostnames"] == ["shop.example.com"]
    mutations = [(m.kind, m.subresource) for m in emu.mutations if m.kind != "Event"]
    assert mutations == [("HTTPRoute", None), ("Deployment", "scale")]
    [patch] = [m for m in emu.mutations if m.kind == "HTTPRoute"]
    assert patch.method == "PATCH" and patch.body["metadata"]["resourceVersion"]  # the precondition travels
    route_step = outcomes[1]
    assert route_step.before == {
        "rules": [
            {"rule": 0, "backendRefs": [{"name": "checkout", "weight": 90}, {"name": "checkout-canary", "weight": 10}]}
        ]
    }
    assert route_step.after["rules"][0]["backendRefs"][1] == {"name": "checkout-canary", "weight": 0}
    assert "backendRef checkout-canary weighted 0 on HTTPRoute checkout" in outcomes[-1].after["message"]


async def test_a_second_rollback_is_a_noop(gw: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = gw
    await rollback(cluster)
    count = len(emu.mutations)
    outcomes = await rollback(cluster)
    assert results(outcomes)[1:] == [
        (Step.TRAFFIC_OFF, StepResult.NOOP),
        (Step.SCALE_ZERO, StepResult.NOOP),
        (Step.EVENT, StepResult.NOOP),
    ]
    assert len(emu.mutations) == count


async def test_a_conflict_is_retried_from_a_fresh_read(gw: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = gw
    emu.add_fault(method="PATCH", path_contains="/httproutes/checkout", status=409, times=1)
    outcomes = await rollback(cluster)
    route_step = outcomes[1]
    assert (route_step.result, route_step.attempts) == (StepResult.DONE, 2)
    assert weights(emu) == [100, 0]


async def test_a_concurrent_edit_between_read_and_patch_is_kept_and_is_what_restore_puts_back(
    gw: tuple[Emulator, KubeCluster],
) -> None:
    """Someone changes the route after our read and before our patch lands: the patch (stale resourceVersion) gets
    409, the retry works from the route as it now is (their 80/20 split), and the recorded before-value is that
    read, not the stale 90/10 one (issue 18: restore used to undo their edit)."""
    emu, cluster = gw
    emu.add_fault(method="PATCH", path_contains="/httproutes/checkout", delay=0.5, times=1)  # held, then served

    async def edit_while_held() -> None:
        await asyncio.sleep(0.2)
        route = emu.get_object(ROUTES, NS, "checkout")
        route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 80
        route["spec"]["rules"][0]["backendRefs"][1]["weight"] = 20
        emu.put_object(ROUTES, NS, "checkout", route)

    editing = asyncio.create_task(edit_while_held())
    outcomes = await rollback(cluster)
    await editing
    route_step = outcomes[1]
    assert route_step.result is StepResult.DONE and route_step.attempts == 2
    assert [m.status for m in emu.mutations if m.kind == "HTTPRoute"] == [409, 200]
    assert weights(emu) == [100, 0]
    assert route_step.before["rules"][0]["backendRefs"] == [
        {"name": "checkout", "weight": 80},
        {"name": "checkout-canary", "weight": 20},
    ]
    record = record_of(outcomes, TARGET)
    point = restore_point([record])
    assert point is not None

    async def on_step(outcome: StepOutcome) -> None:
        pass

    await execute_restore(cluster, TARGET, point=point, safety=SAFETY, retry=RetryPolicy(), on_step=on_step)
    assert weights(emu) == [80, 20]  # their split, not the one before it


async def test_a_route_without_the_canary_backend_fails_before_anything_is_mutated(
    gw: tuple[Emulator, KubeCluster],
) -> None:
    emu, cluster = gw
    outcomes = await rollback(cluster, route_target(backend="nope"))
    assert results(outcomes) == [(Step.CHECK, StepResult.FAILED)]
    assert outcomes[0].reason is FailureReason.INVALID and "nope" in outcomes[0].message
    assert emu.mutations == []


async def test_a_missing_route_is_a_permanent_failure(gw: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = gw
    outcomes = await rollback(cluster, route_target(name="ghost"))
    assert results(outcomes) == [(Step.CHECK, StepResult.FAILED)] and outcomes[0].reason is FailureReason.NOT_FOUND
    assert emu.mutations == []


async def test_the_stable_deployment_is_refused_even_with_a_route(gw: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = gw
    outcomes = await rollback(cluster, route_target("checkout"))
    assert results(outcomes) == [(Step.CHECK, StepResult.REFUSED)] and emu.mutations == []


async def test_dry_run_plans_the_weights_and_changes_nothing(gw: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = gw
    outcomes = await rollback(cluster, dry_run=True)
    assert outcomes[1].result is StepResult.DRY_RUN
    assert outcomes[1].after["rules"][0]["backendRefs"][0] == {"name": "checkout", "weight": 100}
    assert emu.mutations == [] and weights(emu) == [90, 10]


async def test_restore_puts_the_recorded_weights_back_and_refuses_a_changed_route(
    gw: tuple[Emulator, KubeCluster],
) -> None:
    emu, cluster = gw
    outcomes = await rollback(cluster)
    record = record_of(outcomes, TARGET)
    assert ROUTE_OFF in record.steps
    point = restore_point([record])
    assert point is not None
    [route_point] = point.traffic
    assert route_point.ref == ROUTE and route_point.before == outcomes[1].before

    async def on_step(outcome: StepOutcome) -> None:
        pass

    restored = await execute_restore(cluster, TARGET, point=point, safety=SAFETY, retry=RetryPolicy(), on_step=on_step)
    assert results(restored) == [
        (Step.CHECK, StepResult.DONE),
        (Step.SCALE_RESTORE, StepResult.DONE),
        (Step.TRAFFIC_RESTORE, StepResult.DONE),
    ]
    assert restored[-1].id == f"traffic_restore:{ROUTE.key}"
    assert weights(emu) == [90, 10]
    assert emu.get_object("apps/v1/deployments", NS, "checkout-canary")["spec"]["replicas"] == 2

    await rollback(cluster)
    route = emu.get_object(ROUTES, NS, "checkout")
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 50  # a human re-balanced after the rollback
    emu.put_object(ROUTES, NS, "checkout", route)
    refused = await execute_restore(cluster, TARGET, point=point, safety=SAFETY, retry=RetryPolicy(), on_step=on_step)
    assert results(refused) == [(Step.CHECK, StepResult.REFUSED)]
    assert refused[0].reason is FailureReason.CHANGED_SINCE


@pytest.mark.parametrize("target", [GATEWAY_TARGET, GATEWAY_TRAFFIC_TARGET], ids=["shorthand", "traffic"])
async def test_the_whole_responder_rolls_back_an_httproute_canary_and_restores_it(
    tmp_path: Path, target: dict[str, Any]
) -> None:
    async with run_emulator([*sample_canary_objects(NS, "checkout"), route_object(canary_weight=None)]) as (emu, url):
        config = write_config(tmp_path, kube_url=url, targets=[target])
        async with running_responder(config) as running:
            assert (await running.post_alerts(notification(alert()))).status == 200
            await running.services.engine.drain()
            [record] = await running.services.store.rollbacks()
            assert record.status == "done" and record.target.traffic == (ROUTE,)
            assert weights(emu) == [91, 0]  # an unset canary weight counts as 1
            intent = next(e for e in running.captured if e["kind"] == "rollback.intent")
            assert intent["data"]["plan"] == ["check", ROUTE_OFF, "evidence", "scale_zero", "event"]

            operations = running.services.engine.operations
            result = await operations.restore(NS, "checkout-canary", actor="test", dry_run=False)
            assert result.status == "restored", result.message
            assert weights(emu) == [90, None]  # the weight field is gone again, exactly as before
            assert (await running.services.store.verify()).ok


def header_route(*, stable_elsewhere: bool = True) -> SeedObject:
    """The header-canary pattern: a header-matched rule whose only backend is the canary, beside a weighted rule."""
    header = {
        "matches": [{"headers": [{"name": "X-Canary", "value": "always"}]}],
        "backendRefs": [{"name": "checkout-canary", "port": 80}],
    }
    rules: list[dict[str, Any]] = [header]
    if stable_elsewhere:
        rules.append(
            {
                "backendRefs": [
                    {"name": "checkout", "port": 80, "weight": 90},
                    {"name": "checkout-canary", "port": 80, "weight": 10},
                ]
            }
        )
    body = {
        "metadata": {"name": "checkout", "namespace": NS},
        "spec": {"parentRefs": [{"name": "public"}], "rules": rules},
    }
    return SeedObject(ROUTES, NS, "checkout", body)


BOTH = {
    "name": "both",
    "namespace": "{namespace}",
    "deployment": "{app}-canary",
    "traffic": [
        {"kind": "httproute", "name": "{app}", "canary_backend": "{app}-canary"},
        {"kind": "nginx", "name": "{app}-canary"},
    ],
}


def canary_annotation(emu: Emulator) -> str | None:
    ingress = emu.get_object("networking.k8s.io/v1/ingresses", NS, "checkout-canary")
    return str(ingress["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/canary"))


async def test_a_header_rule_routing_only_to_the_canary_is_rolled_back_and_restored_exactly(tmp_path: Path) -> None:
    """Issue 18: such a route used to fail CHECK, so nothing was done at all (not even the Ingress, not the scale)."""
    async with run_emulator([*sample_canary_objects(NS, "checkout"), header_route()]) as (emu, url):
        original = emu.get_object(ROUTES, NS, "checkout")["spec"]["rules"]
        async with running_responder(write_config(tmp_path, kube_url=url, targets=[BOTH])) as running:
            assert (await running.post_alerts(notification(alert()))).status == 200
            await running.services.engine.drain()
            [record] = await running.services.store.rollbacks()
            assert record.status == "done"
            rules = emu.get_object(ROUTES, NS, "checkout")["spec"]["rules"]
            assert rules[0]["backendRefs"] == [
                {"name": "checkout", "port": 80, "weight": 1},
                {"name": "checkout-canary", "port": 80, "weight": 0},
            ]
            assert rules[0]["matches"] == original[0]["matches"]
            assert [r["weight"] for r in rules[1]["backendRefs"]] == [100, 0]
            assert canary_annotation(emu) == "false"
            assert emu.get_object("apps/v1/deployments", NS, "checkout-canary")["spec"]["replicas"] == 0
            result = await running.services.engine.operations.restore(NS, "checkout-canary", actor="t", dry_run=False)
            assert result.status == "restored", result.message
            assert emu.get_object(ROUTES, NS, "checkout")["spec"]["rules"] == original


async def test_without_a_stable_service_the_rest_is_still_done_and_the_rollback_is_partial_and_loud(
    tmp_path: Path,
) -> None:
    async with run_emulator([*sample_canary_objects(NS, "checkout"), header_route(stable_elsewhere=False)]) as (
        emu,
        url,
    ):
        original = emu.get_object(ROUTES, NS, "checkout")["spec"]["rules"]
        async with running_responder(write_config(tmp_path, kube_url=url, targets=[BOTH])) as running:
            assert (await running.post_alerts(notification(alert()))).status == 200
            await running.services.engine.drain()
            [record] = await running.services.store.rollbacks()
            assert record.status == "partial"
            step = record.steps[ROUTE_OFF]
            assert step["reason"] == "incomplete" and "set stable_backend" in step["message"]
            assert emu.get_object(ROUTES, NS, "checkout")["spec"]["rules"] == original  # nothing it could do there
            assert canary_annotation(emu) == "false"  # but the Ingress is off
            assert emu.get_object("apps/v1/deployments", NS, "checkout-canary")["spec"]["replicas"] == 0
            results = [e["data"] for e in running.captured if e["kind"] == "rollback.result"]
            assert results[-1]["status"] == "partial"
            result = await running.services.engine.operations.restore(NS, "checkout-canary", actor="t", dry_run=False)
            assert result.status == "restored", result.message  # a partial rollback is undone like any other
            assert canary_annotation(emu) == "true"
            assert emu.get_object(ROUTES, NS, "checkout")["spec"]["rules"] == original
