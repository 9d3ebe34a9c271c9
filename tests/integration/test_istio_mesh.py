"""The Istio VirtualService traffic switch through the real adapter and executor against the emulator, and through
the whole responder: canary off before the scale-down, idempotence, conflict retry, failure before any mutation,
restore exactly, and a restore refused after someone edited the VirtualService."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import support
from support import alert, notification, running_responder, write_config

from responder.adapters.kube import KubeCluster, open_cluster
from responder.core.model import FailureReason, ObjectView, Step, StepResult, TargetRef, TrafficRef
from responder.engine import restore_point
from responder.engine.executor import RetryPolicy, SafetyRules, StepOutcome, execute_restore, execute_rollback
from responder.engine.lanes import final_status
from responder.store import RollbackRecord
from responder.testing.emulator import Emulator, SeedObject, run_emulator, sample_canary_objects
from responder.traffic import Api

NS = "shop"
SERVICES = "networking.istio.io/v1/virtualservices"
SAFETY = SafetyRules(allowed_namespaces=frozenset({NS}))


def vs_ref(name: str = "checkout", **options: str) -> TrafficRef:
    chosen = options or {"canary_host": "checkout-canary"}
    return TrafficRef("istio", name, tuple(sorted(chosen.items())))


def vs_target(deployment: str = "checkout-canary", ref: TrafficRef | None = None) -> TargetRef:
    return TargetRef(namespace=NS, deployment=deployment, traffic=(ref or vs_ref(),))


REF = vs_ref()
VS_OFF = f"traffic_off:{REF.key}"  # how the step is recorded: "traffic_off:istio/checkout"
TARGET = vs_target()


def dest(host: str, weight: int | None = None, *, subset: str | None = None) -> dict[str, Any]:
    destination: dict[str, Any] = {"host": host, "port": {"number": 80}}
    if subset is not None:
        destination["subset"] = subset
    return {"destination": destination, **({"weight": weight} if weight is not None else {})}


def host_routes(app: str) -> list[dict[str, Any]]:
    """A canary as its own Service: a header-matched route to it only, and a 90/10 split for everyone else."""
    return [
        {
            "name": "canary-by-header",
            "match": [{"headers": {"x-canary": {"exact": "always"}}}],
            "route": [dest(f"{app}-canary")],
        },
        {"name": "static", "match": [{"uri": {"prefix": "/static"}}], "route": [dest("cdn")]},
        {"name": "primary", "route": [dest(app, 90), dest(f"{app}-canary", 10)], "timeout": "5s"},
    ]


def subset_routes(app: str) -> list[dict[str, Any]]:
    """A canary as a subset of one Service (DestinationRule subsets stable and canary)."""
    return [
        {
            "name": "canary-by-cookie",
            "match": [{"headers": {"cookie": {"regex": "^(.*?;)?(canary=yes)(;.*)?$"}}}],
            "route": [dest(app, subset="canary")],
        },
        {"name": "primary", "route": [dest(app, 80, subset="stable"), dest(app, 20, subset="canary")]},
    ]


def vs_object(app: str = "checkout", routes: list[dict[str, Any]] | None = None) -> SeedObject:
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": app, "namespace": NS},
        "spec": {
            "hosts": ["shop.example.com"],
            "gateways": ["istio-ingress/public"],
            "http": routes if routes is not None else host_routes(app),
        },
    }
    return SeedObject(SERVICES, NS, app, body)


def http(emu: Emulator, app: str = "checkout") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = emu.get_object(SERVICES, NS, app)["spec"]["http"]
    return found


def route_weights(emu: Emulator, route: int, app: str = "checkout") -> list[tuple[str, int | None]]:
    return [(d["destination"]["host"], d.get("weight")) for d in http(emu, app)[route]["route"]]


@pytest.fixture
async def mesh() -> AsyncIterator[tuple[Emulator, KubeCluster]]:
    async with run_emulator([*sample_canary_objects(NS, "checkout"), vs_object()]) as (emu, url):
        cluster = await open_cluster(host=url)
        try:
            yield emu, cluster
        finally:
            await cluster.close()


async def on_step(outcome: StepOutcome) -> None:
    pass


async def no_sleep(_: float) -> None:
    pass


async def rollback(cluster: KubeCluster, target: TargetRef = TARGET, **kwargs: Any) -> list[StepOutcome]:
    return await execute_rollback(
        cluster, target, safety=SAFETY, retry=RetryPolicy(), on_step=on_step, sleep=no_sleep, **kwargs
    )


def results(outcomes: list[StepOutcome]) -> list[tuple[Step, StepResult]]:
    return [(o.step, o.result) for o in outcomes]


def record_of(outcomes: list[StepOutcome], target: TargetRef = TARGET) -> RollbackRecord:
    found: RollbackRecord = support.record_of(outcomes, target)
    return found


async def test_the_canary_is_turned_off_on_every_route_before_the_scale_down(
    mesh: tuple[Emulator, KubeCluster],
) -> None:
    emu, cluster = mesh
    original = http(emu)
    outcomes = await rollback(cluster)
    assert results(outcomes) == [
        (Step.CHECK, StepResult.DONE),
        (Step.TRAFFIC_OFF, StepResult.DONE),
        (Step.SCALE_ZERO, StepResult.DONE),
        (Step.EVENT, StepResult.DONE),
    ]
    assert [o.id for o in outcomes] == ["check", VS_OFF, "scale_zero", "event"]
    assert route_weights(emu, 0) == [("checkout", 100), ("checkout-canary", 0)]  # the header route: to stable
    assert route_weights(emu, 2) == [("checkout", 100), ("checkout-canary", 0)]
    now = http(emu)
    assert now[1] == original[1]  # the route without the canary is untouched
    assert now[0]["match"] == original[0]["match"] and now[2]["timeout"] == "5s"
    service = emu.get_object(SERVICES, NS, "checkout")
    assert service["spec"]["hosts"] == ["shop.example.com"] and service["spec"]["gateways"] == ["istio-ingress/public"]
    mutations = [(m.kind, m.subresource) for m in emu.mutations if m.kind != "Event"]
    assert mutations == [("VirtualService", None), ("Deployment", "scale")]
    [patch] = [m for m in emu.mutations if m.kind == "VirtualService"]
    assert patch.method == "PATCH" and patch.body["metadata"]["resourceVersion"]  # the precondition travels
    assert set(patch.body["spec"]) == {"http"}
    step = outcomes[1]
    assert step.before == {"http": original} and step.after == {"http": now}  # the whole list, exactly
    facts = outcomes[0].before["traffic"][REF.key]["routes"]
    assert [(r["route"], r["name"]) for r in facts] == [(0, "canary-by-header"), (2, "primary")]
    assert facts[1]["destinations"][1] == {
        "host": "checkout-canary",
        "port": {"number": 80},
        "weight": 10,
        "canary": True,
    }
    message = outcomes[-1].after["message"]
    assert "canary checkout-canary off on VirtualService checkout (HTTP route(s) canary-by-header, primary" in message


async def test_a_second_rollback_is_a_noop(mesh: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = mesh
    await rollback(cluster)
    count = len(emu.mutations)
    outcomes = await rollback(cluster)
    assert results(outcomes) == [
        (Step.CHECK, StepResult.DONE),
        (Step.TRAFFIC_OFF, StepResult.NOOP),
        (Step.SCALE_ZERO, StepResult.NOOP),
        (Step.EVENT, StepResult.NOOP),
    ]
    assert len(emu.mutations) == count


async def test_a_conflict_is_retried_from_a_fresh_read(mesh: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = mesh
    emu.add_fault(method="PATCH", path_contains="/virtualservices/checkout", status=409, times=1)
    outcomes = await rollback(cluster)
    step = outcomes[1]
    assert (step.result, step.attempts) == (StepResult.DONE, 2)
    assert route_weights(emu, 2) == [("checkout", 100), ("checkout-canary", 0)]


async def test_a_concurrent_edit_between_read_and_patch_is_not_overwritten(mesh: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = mesh
    # Someone else changes the VirtualService after our CHECK read it: our patch carries the stale resourceVersion,
    # gets 409, and the retry works from the object as it now is (their 70/30 split and their new route).
    real_get = cluster.get_object
    reads = 0

    async def get_then_edit(api: Api, namespace: str, name: str) -> ObjectView:
        nonlocal reads
        found = await real_get(api, namespace, name)
        if api.plural != "virtualservices":
            return found
        reads += 1
        if reads == 1:
            service = emu.get_object(SERVICES, NS, "checkout")
            service["spec"]["http"][2]["route"] = [dest("checkout", 70), dest("checkout-canary", 30)]
            service["spec"]["http"].insert(1, {"name": "health", "match": [{"uri": {"exact": "/healthz"}}],
                                               "directResponse": {"status": 200}})  # fmt: skip
            emu.put_object(SERVICES, NS, "checkout", service)
        return found

    cluster.get_object = get_then_edit  # type: ignore[method-assign]
    outcomes = await rollback(cluster)
    step = outcomes[1]
    assert step.result is StepResult.DONE and step.attempts == 2
    assert [m.status for m in emu.mutations if m.kind == "VirtualService"] == [409, 200]
    now = http(emu)
    assert [r.get("name") for r in now] == ["canary-by-header", "health", "static", "primary"]  # their route kept
    assert route_weights(emu, 3) == [("checkout", 100), ("checkout-canary", 0)]  # 70 + 30, not 90 + 10
    assert step.before["http"][3]["route"][1]["weight"] == 30  # the before-value is the read the write followed


async def test_without_a_stable_destination_the_rest_is_done_and_the_rollback_is_partial() -> None:
    """A VirtualService whose only route sends to the canary and names no stable destination: the route is left as
    it is (never pointed at a guess) and reported, the scale-down still happens, the rollback ends PARTIAL."""
    only_canary = [{"name": "all", "route": [dest("checkout-canary")]}]
    async with run_emulator([*sample_canary_objects(NS, "checkout"), vs_object(routes=only_canary)]) as (emu, url):
        cluster = await open_cluster(host=url)
        try:
            outcomes = await rollback(cluster)
            assert results(outcomes)[:2] == [(Step.CHECK, StepResult.DONE), (Step.TRAFFIC_OFF, StepResult.NOOP)]
            off_step = outcomes[1]
            assert off_step.reason is FailureReason.INCOMPLETE
            assert "manual action required" in off_step.message and "set stable_host" in off_step.message
            assert final_status(outcomes) == "partial"
            assert [m.kind for m in emu.mutations if m.kind != "Event"] == ["Deployment"]  # the scale-down only
            assert http(emu)[0]["route"] == [dest("checkout-canary")]
            # With the stable host named, the same VirtualService can be turned off.
            named = vs_target(ref=vs_ref(canary_host="checkout-canary", stable_host="checkout"))
            outcomes = await rollback(cluster, named)
            assert results(outcomes)[:2] == [(Step.CHECK, StepResult.DONE), (Step.TRAFFIC_OFF, StepResult.DONE)]
            assert route_weights(emu, 0) == [("checkout", 100), ("checkout-canary", 0)]
        finally:
            await cluster.close()


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        (vs_ref(stable_host="checkout"), "canary_host and/or canary_subset"),
        (vs_ref(canary_host="nope"), "no HTTP route"),
    ],
    ids=["no-canary-option", "no-such-canary"],
)
async def test_a_virtual_service_that_cannot_be_turned_off_fails_the_check(
    mesh: tuple[Emulator, KubeCluster], ref: TrafficRef, why: str
) -> None:
    emu, cluster = mesh
    outcomes = await rollback(cluster, vs_target(ref=ref))
    assert results(outcomes) == [(Step.CHECK, StepResult.FAILED)]
    assert outcomes[0].reason is FailureReason.INVALID and why in outcomes[0].message
    assert emu.mutations == []


async def test_a_missing_virtual_service_is_a_permanent_failure(mesh: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = mesh
    outcomes = await rollback(cluster, vs_target(ref=vs_ref("ghost")))
    assert results(outcomes) == [(Step.CHECK, StepResult.FAILED)] and outcomes[0].reason is FailureReason.NOT_FOUND
    assert emu.mutations == []


async def test_dry_run_plans_the_routes_and_changes_nothing(mesh: tuple[Emulator, KubeCluster]) -> None:
    emu, cluster = mesh
    original = http(emu)
    outcomes = await rollback(cluster, dry_run=True)
    assert outcomes[1].result is StepResult.DRY_RUN
    assert outcomes[1].after["http"][2]["route"][0]["weight"] == 100
    assert emu.mutations == [] and http(emu) == original


async def test_restore_puts_spec_http_back_exactly_and_refuses_an_edited_virtual_service(
    mesh: tuple[Emulator, KubeCluster],
) -> None:
    emu, cluster = mesh
    original = http(emu)
    outcomes = await rollback(cluster)
    point = restore_point([record_of(outcomes)])
    assert point is not None
    [traffic] = point.traffic
    assert traffic.ref == REF and traffic.before == {"http": original}

    restored = await execute_restore(cluster, TARGET, point=point, safety=SAFETY, retry=RetryPolicy(), on_step=on_step)
    assert results(restored) == [
        (Step.CHECK, StepResult.DONE),
        (Step.SCALE_RESTORE, StepResult.DONE),
        (Step.TRAFFIC_RESTORE, StepResult.DONE),
    ]
    assert restored[-1].id == f"traffic_restore:{REF.key}"
    assert http(emu) == original  # deep-equal: the omitted weight of the header route is omitted again
    assert "weight" not in http(emu)[0]["route"][0]
    assert emu.get_object("apps/v1/deployments", NS, "checkout-canary")["spec"]["replicas"] == 2

    point = restore_point([record_of(await rollback(cluster))])
    assert point is not None
    service = emu.get_object(SERVICES, NS, "checkout")
    service["spec"]["http"][2]["timeout"] = "10s"  # a human edited a route after the rollback
    emu.put_object(SERVICES, NS, "checkout", service)
    edited = copy.deepcopy(service["spec"]["http"])
    count = len([m for m in emu.mutations if m.kind == "VirtualService"])
    refused = await execute_restore(cluster, TARGET, point=point, safety=SAFETY, retry=RetryPolicy(), on_step=on_step)
    assert results(refused) == [(Step.CHECK, StepResult.REFUSED)]
    assert refused[0].reason is FailureReason.CHANGED_SINCE and "istio checkout" in refused[0].message
    assert http(emu) == edited and len([m for m in emu.mutations if m.kind == "VirtualService"]) == count


@pytest.mark.parametrize(
    ("options", "routes"),
    [
        ({"canary_host": "{app}-canary"}, host_routes),
        ({"canary_subset": "canary"}, subset_routes),
    ],
    ids=["canary_host", "canary_subset"],
)
async def test_the_whole_responder_rolls_back_a_virtual_service_canary_and_restores_it(
    tmp_path: Path, options: dict[str, str], routes: Any
) -> None:
    seeded = vs_object(routes=routes("checkout"))
    target = {
        "name": "mesh",
        "namespace": "{namespace}",
        "deployment": "{app}-canary",
        "traffic": [{"kind": "istio", "name": "{app}", **options}],
    }
    async with run_emulator([*sample_canary_objects(NS, "checkout"), seeded]) as (emu, url):
        original = http(emu)
        config = write_config(tmp_path, kube_url=url, targets=[target])
        async with running_responder(config) as running:
            assert (await running.post_alerts(notification(alert()))).status == 200
            await running.services.engine.drain()
            [record] = await running.services.store.rollbacks()
            rendered = {k: v.replace("{app}", "checkout") for k, v in options.items()}
            assert record.status == "done" and record.target.traffic == (vs_ref(**rendered),)
            changed = [r for r in http(emu) if r not in original]
            assert len(changed) == 2  # the matched route to the canary only, and the split
            for route in changed:
                weighted = [d.get("weight") for d in route["route"]]
                assert weighted[-1] == 0 and sum(weighted) == 100  # the canary last, at 0; the total kept
            assert emu.get_object("apps/v1/deployments", NS, "checkout-canary")["spec"]["replicas"] == 0
            intent = next(e for e in running.captured if e["kind"] == "rollback.intent")
            assert intent["data"]["plan"] == ["check", "traffic_off:istio/checkout", "evidence", "scale_zero", "event"]

            operations = running.services.engine.operations
            result = await operations.restore(NS, "checkout-canary", actor="test", dry_run=False)
            assert result.status == "restored", result.message
            assert http(emu) == original
            assert (await running.services.store.verify()).ok
