"""The in-process ClusterPort fake: its own contract, then the real rollback executor running against it."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from fake_cluster import CANARY_ANNOTATION, STATUS_OF, FakeCluster, FakeMutation, state_in
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.core.model import FailureReason, Step, TargetRef, TrafficRef
from responder.engine.executor import (
    RestorePoint,
    RetryPolicy,
    SafetyRules,
    StepOutcome,
    TrafficPoint,
    execute_restore,
    execute_rollback,
)
from responder.ports import ClusterError, ClusterPort
from responder.traffic import Api
from responder.traffic.httproute import GatewayHTTPRoute
from responder.traffic.nginx import NginxCanaryIngress

NS = "shop"
CANARY = "checkout-canary"
SAFETY = SafetyRules(allowed_namespaces=frozenset({NS}))
INGRESS_API, ROUTE_API = NginxCanaryIngress.api, GatewayHTTPRoute.api
NGINX = TrafficRef("nginx", CANARY)
ROUTE = TrafficRef("httproute", "checkout", (("canary_backend", CANARY),))
NGINX_OFF = f"traffic_off:{NGINX.key}"  # the recorded step ids: "traffic_off:nginx/checkout-canary"
ROUTE_OFF = f"traffic_off:{ROUTE.key}"  # "traffic_off:httproute/checkout"
NGINX_BACK = f"traffic_restore:{NGINX.key}"


@pytest.fixture
def fake() -> FakeCluster:
    fake = FakeCluster()
    fake.add_stable(NS, "checkout")
    return fake


class Crash(BaseException):
    """The process dies here: not an Exception, so nothing on the way up may swallow it."""


# --- the fake on its own: objects, versions, copies -------------------------------------------------------


def test_it_implements_every_method_of_the_port() -> None:
    port: ClusterPort = FakeCluster()  # checked statically by mypy
    wanted = {name for name, _ in inspect.getmembers(ClusterPort, inspect.iscoroutinefunction)}
    assert len(wanted) == 12
    assert {"get_object", "patch_object"} <= wanted
    assert wanted <= {name for name, _ in inspect.getmembers(port, inspect.iscoroutinefunction)}
    for name in wanted:
        ours = inspect.signature(getattr(FakeCluster, name)).parameters
        assert list(ours) == list(inspect.signature(getattr(ClusterPort, name)).parameters), name


def test_add_canary_creates_the_deployment_and_its_routing(fake: FakeCluster) -> None:
    target = fake.add_canary(NS, "checkout", route=True)
    assert target == TargetRef(namespace=NS, deployment=CANARY, traffic=(NGINX, ROUTE))
    state = fake.state_of(NS, "checkout")
    assert (state["replicas"], state["canary"], state["stable_replicas"]) == (2, "true", 4)
    assert [ref["weight"] for ref in state["rules"][0]["backendRefs"]] == [90, 10]
    assert fake.add_canary(NS, "payments", ingress=False) == TargetRef(namespace=NS, deployment="payments-canary")
    assert fake.state_of(NS, "payments") == {"replicas": 2, "canary": None, "rules": None, "stable_replicas": None}


async def test_views_are_copies_that_cannot_alias_the_state(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout", route=True)
    deployment = await fake.get_deployment(NS, CANARY)
    assert dict(deployment.labels) == {"app": "checkout", "version": "canary"}
    assert (deployment.replicas, deployment.ready_replicas, deployment.images) == (2, 2, ("checkout:1.5.0",))
    deployment.labels["version"] = "stable"  # type: ignore[index]  # a Mapping, but really a dict: a fresh one
    route = await fake.get_object(ROUTE_API, NS, "checkout")
    route.body["spec"]["rules"][0]["backendRefs"][0]["weight"] = 0
    rules = [{"backendRefs": [{"name": "checkout", "weight": 100}]}]
    patched = await fake.patch_object(ROUTE_API, NS, "checkout", patch={"spec": {"rules": rules}}, resource_version="")
    rules[0]["backendRefs"][0]["weight"] = 1
    patched.body["spec"]["rules"][0]["backendRefs"][0]["weight"] = 2
    assert (await fake.get_deployment(NS, CANARY)).labels["version"] == "canary"
    assert fake.state_of(NS, "checkout")["rules"] == [{"backendRefs": [{"name": "checkout", "weight": 100}]}]


async def test_resource_versions_come_from_one_global_counter(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    stable, canary = await fake.get_deployment(NS, "checkout"), await fake.get_deployment(NS, CANARY)
    ingress = await fake.get_object(INGRESS_API, NS, CANARY)
    assert ingress.body["metadata"]["resourceVersion"] == ingress.resource_version
    versions = [int(v.resource_version) for v in (stable, canary, ingress)]
    assert versions == sorted(set(versions))
    assert (await fake.get_scale(NS, CANARY)).resource_version == canary.resource_version
    scaled = await fake.set_replicas(NS, CANARY, replicas=1, resource_version=canary.resource_version)
    assert int(scaled.resource_version) > versions[-1]


@pytest.mark.parametrize(
    ("method", "api", "name", "kwargs"),
    [
        (
            "patch_object",
            (INGRESS_API,),
            CANARY,
            {"patch": {"metadata": {"annotations": {CANARY_ANNOTATION: "false"}}}},
        ),
        ("patch_object", (ROUTE_API,), "checkout", {"patch": {"spec": {"rules": []}}}),
        ("set_deployment_annotations", (), CANARY, {"annotations": {"a": "b"}}),
        ("set_replicas", (), CANARY, {"replicas": 0}),
    ],
    ids=["ingress", "httproute", "deployment-annotations", "replicas"],
)
async def test_a_stale_resource_version_is_a_conflict_that_changes_nothing(
    fake: FakeCluster, method: str, api: tuple[Api, ...], name: str, kwargs: dict[str, Any]
) -> None:
    fake.add_canary(NS, "checkout", route=True)
    before = fake.snapshot()
    with pytest.raises(ClusterError) as info:
        await getattr(fake, method)(*api, NS, name, resource_version="1", **kwargs)
    assert (info.value.reason, info.value.status, info.value.retryable) == (FailureReason.CONFLICT, 409, True)
    assert fake.snapshot() == before
    [mutation] = fake.mutations
    assert (mutation.method, mutation.name, mutation.landed) == (method, name, False)


async def test_an_empty_resource_version_is_unconditional(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    patch = {"metadata": {"annotations": {CANARY_ANNOTATION: None, "x": "1"}}}
    patched = await fake.patch_object(INGRESS_API, NS, CANARY, patch=patch, resource_version="")
    annotations = patched.body["metadata"]["annotations"]
    assert CANARY_ANNOTATION not in annotations
    assert annotations["x"] == "1" and annotations["nginx.ingress.kubernetes.io/canary-weight"] == "10"


async def test_any_other_kind_is_served_as_its_raw_body(fake: FakeCluster) -> None:
    vs_api = Api("networking.istio.io", "v1", "virtualservices")
    route = {"route": [{"destination": {"host": "checkout"}, "weight": 90}, {"destination": {"host": CANARY}}]}
    seeded = fake.add_object("virtualservices", NS, "checkout", {"spec": {"http": [route]}})
    read = await fake.get_object(vs_api, NS, "checkout")
    assert read == seeded and read.body["metadata"] == {
        "name": "checkout",
        "namespace": NS,
        "resourceVersion": read.resource_version,
    }
    patch = {"metadata": {"labels": {"x": "1"}}, "spec": {"http": []}}  # a merge patch replaces lists whole
    patched = await fake.patch_object(vs_api, NS, "checkout", patch=patch, resource_version=read.resource_version)
    assert fake.object_body("virtualservices", NS, "checkout") == patched.body
    assert patched.body["spec"] == {"http": []} and patched.body["metadata"]["labels"] == {"x": "1"}
    assert int(patched.resource_version) > int(read.resource_version)
    with pytest.raises(ClusterError) as info:
        await fake.patch_object(vs_api, NS, "checkout", patch={"spec": None}, resource_version=read.resource_version)
    assert (
        info.value.reason is FailureReason.CONFLICT
        and fake.object_body("virtualservices", NS, "checkout") == patched.body
    )
    assert [m.landed for m in fake.mutations_of("patch_object")] == [True, False]


@pytest.mark.parametrize(
    ("method", "api"),
    [
        ("get_deployment", ()),
        ("get_object", (INGRESS_API,)),
        ("get_object", (ROUTE_API,)),
        ("get_object", (Api("networking.istio.io", "v1", "virtualservices"),)),  # a kind seeded raw
        ("get_scale", ()),
    ],
    ids=["deployment", "ingress", "httproute", "virtualservice", "scale"],
)
async def test_a_missing_object_is_not_found(fake: FakeCluster, method: str, api: tuple[Api, ...]) -> None:
    with pytest.raises(ClusterError) as info:
        await getattr(fake, method)(*api, NS, "ghost")
    assert (info.value.reason, info.value.status, info.value.retryable) == (FailureReason.NOT_FOUND, 404, False)


async def test_a_missing_object_cannot_be_changed(fake: FakeCluster) -> None:
    with pytest.raises(ClusterError) as info:
        await fake.set_replicas(NS, "ghost", replicas=0, resource_version="")
    assert info.value.reason is FailureReason.NOT_FOUND and not fake.landed()


async def test_scaled_pods_are_ready_at_once_unless_told_otherwise(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    fake.add_canary(NS, "payments", ready=False)
    for name in (CANARY, "payments-canary"):
        await fake.set_replicas(NS, name, replicas=0, resource_version="")
        await fake.set_replicas(NS, name, replicas=3, resource_version="")
    assert (await fake.get_deployment(NS, CANARY)).ready_replicas == 3
    assert (await fake.get_deployment(NS, "payments-canary")).ready_replicas == 0
    fake.set_ready(NS, "payments-canary")
    assert (await fake.get_deployment(NS, "payments-canary")).ready_replicas == 3


async def test_other_writers_move_the_resource_version_on(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    read = await fake.get_scale(NS, CANARY)
    fake.edit_deployment(NS, CANARY)
    with pytest.raises(ClusterError):
        await fake.set_replicas(NS, CANARY, replicas=0, resource_version=read.resource_version)
    fake.edit_deployment(NS, CANARY, labels={"app": "checkout"}, images=["checkout:2"])
    deployment = await fake.get_deployment(NS, CANARY)
    assert (dict(deployment.labels), deployment.images) == ({"app": "checkout"}, ("checkout:2",))
    assert fake.mutations[0].landed is False and fake.landed() == []  # other writers are not logged


# --- faults -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "status"), list(STATUS_OF.items()))
async def test_an_injected_fault_raises_its_reason_and_status(
    fake: FakeCluster, reason: FailureReason, status: int | None
) -> None:
    fake.fail("get_deployment", reason)
    with pytest.raises(ClusterError) as info:
        await fake.get_deployment(NS, "checkout")
    assert (info.value.reason, info.value.status) == (reason, status)
    assert (await fake.get_deployment(NS, "checkout")).name == "checkout"  # once only, by default


async def test_faults_apply_in_order_a_number_of_times_or_until_healed(fake: FakeCluster) -> None:
    fake.fail("ping", FailureReason.TIMEOUT, times=2)
    fake.fail("ping", FailureReason.FORBIDDEN)
    seen: list[FailureReason | None] = []
    for _ in range(4):
        try:
            await fake.ping()
            seen.append(None)
        except ClusterError as exc:
            seen.append(exc.reason)
    assert seen == [FailureReason.TIMEOUT, FailureReason.TIMEOUT, FailureReason.FORBIDDEN, None]
    fake.fail_forever("ping", FailureReason.CONNECTION)
    for _ in range(3):
        with pytest.raises(ClusterError):
            await fake.ping()
    fake.heal()
    await fake.ping()


async def test_a_fault_fails_the_write_before_its_change(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    fault = fake.fail("set_replicas", FailureReason.SERVER_ERROR)
    with pytest.raises(ClusterError):
        await fake.set_replicas(NS, CANARY, replicas=0, resource_version="")
    assert fake.state_of(NS, "checkout")["replicas"] == 2 and fault.hits == 1 and not fault.active
    assert [m.landed for m in fake.mutations] == [False]


async def test_a_landing_fault_applies_the_change_then_raises(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    fake.fail("set_replicas", FailureReason.TIMEOUT, land=True)
    with pytest.raises(ClusterError) as info:
        await fake.set_replicas(NS, CANARY, replicas=0, resource_version="")
    assert (info.value.reason, info.value.status) == (FailureReason.TIMEOUT, None)
    [mutation] = fake.mutations
    assert mutation.landed and mutation.state_of(NS, "checkout")["replicas"] == 0
    assert fake.state_of(NS, "checkout")["replicas"] == 0


async def test_a_landing_fault_on_a_stale_write_changes_nothing_but_still_raises_the_injected_error(
    fake: FakeCluster,
) -> None:
    fake.add_canary(NS, "checkout")
    fake.fail("set_replicas", FailureReason.TIMEOUT, land=True)
    with pytest.raises(ClusterError) as info:
        await fake.set_replicas(NS, CANARY, replicas=0, resource_version="1")
    assert info.value.reason is FailureReason.TIMEOUT and isinstance(info.value.__cause__, ClusterError)
    assert fake.state_of(NS, "checkout")["replicas"] == 2 and not fake.mutations[0].landed


def test_faults_are_checked_when_added(fake: FakeCluster) -> None:
    with pytest.raises(ValueError, match="not a ClusterPort method"):
        fake.fail("set_replica")
    with pytest.raises(ValueError, match="land=True"):
        fake.fail("get_scale", land=True)
    with pytest.raises(ValueError, match="times"):
        fake.fail("get_scale", times=0)


async def test_heal_of_one_method_keeps_the_others(fake: FakeCluster) -> None:
    fake.fail_forever("ping")
    fake.fail_forever("get_deployment")
    fake.heal("ping")
    await fake.ping()
    with pytest.raises(ClusterError):
        await fake.get_deployment(NS, "checkout")


# --- the hook and the logs ----------------------------------------------------------------------------------


async def test_before_call_can_hold_a_call_while_the_state_changes_behind_it(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    held, release = asyncio.Event(), asyncio.Event()

    async def hold_scale(method: str, args: tuple[Any, ...]) -> None:
        if method == "set_replicas":
            held.set()
            await release.wait()

    fake.before_call = hold_scale
    read = await fake.get_scale(NS, CANARY)
    call = asyncio.create_task(fake.set_replicas(NS, CANARY, replicas=0, resource_version=read.resource_version))
    await held.wait()
    assert fake.mutations == []  # nothing reached the "API server" yet
    fake.edit_deployment(NS, CANARY)
    release.set()
    with pytest.raises(ClusterError) as info:
        await call
    assert info.value.reason is FailureReason.CONFLICT


async def test_a_crash_in_before_call_leaves_no_trace_of_the_call(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")

    async def crash_on_scale(method: str, args: tuple[Any, ...]) -> None:
        if method == "set_replicas":
            raise Crash

    fake.before_call = crash_on_scale
    with pytest.raises(Crash):
        await fake.set_replicas(NS, CANARY, replicas=0, resource_version="")
    assert fake.mutations == [] and fake.calls == [] and fake.state_of(NS, "checkout")["replicas"] == 2


async def test_before_call_sees_every_call_with_its_arguments(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    seen: list[tuple[str, tuple[Any, ...]]] = []

    async def record(method: str, args: tuple[Any, ...]) -> None:
        seen.append((method, args))

    fake.before_call = record
    deployment = await fake.get_deployment(NS, CANARY)
    await fake.set_replicas(NS, CANARY, replicas=0, resource_version="")
    await fake.emit_event(deployment, reason="R", message="m")
    await fake.ping()
    await fake.close()
    assert seen == [
        ("get_deployment", (NS, CANARY)),
        ("set_replicas", (NS, CANARY, 0, "")),
        ("emit_event", (deployment, "R", "m", True)),
        ("ping", ()),
        ("close", ()),
    ]
    assert fake.calls == seen and fake.closed


async def test_mutations_carry_a_snapshot_of_the_state_right_after_them(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    patch = {"metadata": {"annotations": {CANARY_ANNOTATION: "false"}}}
    await fake.patch_object(INGRESS_API, NS, CANARY, patch=patch, resource_version="")
    await fake.set_replicas(NS, CANARY, replicas=0, resource_version="")
    traffic, scale = fake.mutations
    assert (traffic.method, traffic.name) == ("patch_object", CANARY)
    assert traffic.args == {"plural": "ingresses", "patch": patch, "resource_version": ""}
    assert traffic.state_of(NS, "checkout")["replicas"] == 2 and traffic.state_of(NS, "checkout")["canary"] == "false"
    assert scale.state_of(NS, "checkout") == {"replicas": 0, "canary": "false", "rules": None, "stable_replicas": 4}
    assert state_in(fake.snapshot(), NS, "checkout") == scale.state_of(NS, "checkout")


async def test_events_are_recorded(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    await fake.emit_event(await fake.get_deployment(NS, CANARY), reason="CanaryRolledBack", message="gone")
    assert fake.events == [(NS, CANARY, "CanaryRolledBack", "gone")]
    assert [(m.method, m.name, m.landed) for m in fake.mutations] == [("emit_event", CANARY, True)]


# --- the real executor against the fake ---------------------------------------------------------------------


async def _no_sleep(_: float) -> None:
    pass


async def _ignore(_: StepOutcome) -> None:
    pass


async def rollback(fake: FakeCluster, target: TargetRef, **kwargs: Any) -> dict[str, StepOutcome]:
    """The outcomes by step id ("check", "traffic_off:nginx/checkout-canary", "scale_zero" ...)."""
    outcomes = await execute_rollback(
        fake, target, safety=SAFETY, retry=RetryPolicy(), on_step=_ignore, sleep=_no_sleep, random=lambda: 0.5, **kwargs
    )
    return {o.id: o for o in outcomes}


def results(outcomes: dict[str, StepOutcome]) -> dict[str, str]:
    return {step: o.result.value for step, o in outcomes.items()}


def scaled_to_zero(fake: FakeCluster) -> FakeMutation:
    [scale] = [m for m in fake.landed("set_replicas") if m.args["replicas"] == 0]
    return scale


async def test_rollback_turns_traffic_off_before_scaling_to_zero(fake: FakeCluster) -> None:
    target = fake.add_canary(NS, "checkout")
    outcomes = await rollback(fake, target)
    assert list(outcomes) == [Step.CHECK, NGINX_OFF, Step.SCALE_ZERO, Step.EVENT]
    assert results(outcomes)[NGINX_OFF] == "done" and results(outcomes)[Step.SCALE_ZERO] == "done"
    assert fake.state_of(NS, "checkout") == {"replicas": 0, "canary": "false", "rules": None, "stable_replicas": 4}
    assert scaled_to_zero(fake).state_of(NS, "checkout")["canary"] == "false"  # traffic was already off
    assert {m.name for m in fake.mutations} == {CANARY}  # the stable Deployment was never written to
    assert [(e.deployment, e.reason) for e in fake.events] == [(CANARY, "CanaryRolledBack")]


async def test_rollback_through_an_httproute_weights_the_canary_out_first(fake: FakeCluster) -> None:
    target = fake.add_canary(NS, "checkout", ingress=False, route=True)
    outcomes = await rollback(fake, target)
    assert list(outcomes) == [Step.CHECK, ROUTE_OFF, Step.SCALE_ZERO, Step.EVENT]
    assert results(outcomes)[ROUTE_OFF] == "done" and results(outcomes)[Step.SCALE_ZERO] == "done"
    rules = scaled_to_zero(fake).state_of(NS, "checkout")["rules"]
    weights = [[ref["weight"] for ref in rule["backendRefs"]] for rule in rules]
    assert weights == [[100, 0]]


async def test_a_second_rollback_changes_nothing(fake: FakeCluster) -> None:
    target = fake.add_canary(NS, "checkout")
    await rollback(fake, target)
    writes = len(fake.mutations)
    outcomes = await rollback(fake, target)
    assert results(outcomes)[NGINX_OFF] == "noop" and results(outcomes)[Step.SCALE_ZERO] == "noop"
    assert len(fake.mutations) == writes


async def test_a_real_conflict_is_retried_from_a_fresh_read(fake: FakeCluster) -> None:
    target = fake.add_canary(NS, "checkout")

    async def race_the_first_scale(method: str, args: tuple[Any, ...]) -> None:
        if method == "set_replicas" and not fake.mutations_of("set_replicas"):
            fake.edit_deployment(NS, CANARY, annotations={"someone": "else"})  # after our read, before our write

    fake.before_call = race_the_first_scale
    outcomes = await rollback(fake, target)
    assert results(outcomes)[Step.SCALE_ZERO] == "done"
    assert [m.landed for m in fake.mutations_of("set_replicas")] == [False, True]
    assert fake.state_of(NS, "checkout")["replicas"] == 0


async def test_an_injected_conflict_is_retried(fake: FakeCluster) -> None:
    target = fake.add_canary(NS, "checkout")
    fake.fail("patch_object", FailureReason.CONFLICT, times=2)
    outcomes = await rollback(fake, target)
    assert results(outcomes)[NGINX_OFF] == "done"
    assert [m.landed for m in fake.mutations_of("patch_object")] == [False, False, True]
    assert scaled_to_zero(fake).state_of(NS, "checkout")["canary"] == "false"


async def test_a_timeout_after_the_scale_landed_is_done_and_remembers_the_replicas(fake: FakeCluster) -> None:
    target = fake.add_canary(NS, "checkout", replicas=3)
    fake.fail("set_replicas", FailureReason.TIMEOUT, land=True)
    outcomes = await rollback(fake, target)
    scale = outcomes[Step.SCALE_ZERO]
    assert scale.result.value == "done"
    assert scale.before == {"replicas": 3}  # what an undo must put back, not the 0 the retry found
    assert len(fake.landed("set_replicas")) == 1 and fake.state_of(NS, "checkout")["replicas"] == 0


async def test_a_non_canary_is_refused_and_nothing_is_written(fake: FakeCluster) -> None:
    fake.add_canary(NS, "checkout")
    before = fake.snapshot()
    outcomes = await rollback(fake, TargetRef(namespace=NS, deployment="checkout", traffic=(NGINX,)))
    assert results(outcomes) == {Step.CHECK: "refused"}
    assert outcomes[Step.CHECK].reason is FailureReason.NOT_CANARY
    assert fake.mutations == [] and fake.events == [] and fake.snapshot() == before


async def test_a_permanent_failure_of_traffic_off_never_scales(fake: FakeCluster) -> None:
    target = fake.add_canary(NS, "checkout")
    fake.fail_forever("patch_object", FailureReason.FORBIDDEN)
    outcomes = await rollback(fake, target)
    assert results(outcomes)[NGINX_OFF] == "failed" and Step.SCALE_ZERO not in outcomes
    assert fake.state_of(NS, "checkout") == {"replicas": 2, "canary": "true", "rules": None, "stable_replicas": 4}


async def restore(fake: FakeCluster, target: TargetRef) -> dict[str, StepOutcome]:
    """Undo the rollback of the NGINX canary Ingress ``target`` (outcomes by step id)."""
    on, off = {CANARY_ANNOTATION: "true"}, {CANARY_ANNOTATION: "false"}
    traffic = TrafficPoint(ref=NGINX, before={"annotations": on}, after={"annotations": off})
    point = RestorePoint(replicas=2, images=("checkout:1.5.0",), traffic=(traffic,))
    outcomes = await execute_restore(
        fake,
        target,
        point=point,
        safety=SAFETY,
        retry=RetryPolicy(),
        on_step=_ignore,
        sleep=_no_sleep,
        ready_timeout_s=5.0,
    )
    return {o.id: o for o in outcomes}


async def test_restore_scales_back_then_lets_traffic_in(fake: FakeCluster) -> None:
    target = fake.add_canary(NS, "checkout")
    await rollback(fake, target)
    outcomes = await restore(fake, target)
    assert results(outcomes)[Step.SCALE_RESTORE] == "done" and results(outcomes)[NGINX_BACK] == "done"
    assert fake.state_of(NS, "checkout")["replicas"] == 2 and fake.state_of(NS, "checkout")["canary"] == "true"
    traffic_on = {"metadata": {"annotations": {CANARY_ANNOTATION: "true"}}}
    [traffic_back] = [m for m in fake.landed("patch_object") if m.args["patch"] == traffic_on]
    assert traffic_back.snapshot["deployments"][NS, CANARY]["ready_replicas"] == 2  # pods ready before traffic


async def test_restore_with_pods_that_never_get_ready_keeps_traffic_off(fake: FakeCluster) -> None:
    target = fake.add_canary(NS, "checkout", ready=False)
    await rollback(fake, target)
    outcomes = await restore(fake, target)
    assert results(outcomes)[Step.SCALE_RESTORE] == "failed" and NGINX_BACK not in outcomes
    assert outcomes[Step.SCALE_RESTORE].reason is FailureReason.NOT_READY
    assert fake.state_of(NS, "checkout")["replicas"] == 2 and fake.state_of(NS, "checkout")["canary"] == "false"


# --- a property: whatever fails, the canary is never scaled to zero while it still takes traffic -----------

_WRITES = ["patch_object", "set_replicas", "emit_event"]
_FAULTS = st.lists(
    st.tuples(
        st.sampled_from(_WRITES + ["get_deployment", "get_object", "get_scale"]),
        st.sampled_from(list(STATUS_OF)),
        st.integers(min_value=1, max_value=4),
        st.booleans(),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(faults=_FAULTS)
def test_traffic_is_always_off_before_the_canary_scales_to_zero(
    faults: list[tuple[str, FailureReason, int, bool]],
) -> None:
    fake = FakeCluster()
    fake.add_stable(NS, "checkout")
    target = fake.add_canary(NS, "checkout")
    for method, reason, times, land in faults:
        fake.fail(method, reason, times, land=land and method in _WRITES)
    asyncio.run(rollback(fake, target))
    for scale in fake.landed("set_replicas"):
        assert scale.state_of(NS, "checkout")["canary"] == "false"
    assert fake.state_of(NS, "checkout")["stable_replicas"] == 4
