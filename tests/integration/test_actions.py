"""The rollback executor through the real Kubernetes adapter (kubernetes_asyncio) against the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Any

import pytest

from responder.adapters.kube import KubeCluster, open_cluster, reason_for_status
from responder.core.model import FailureReason, ObjectView, Step, StepResult, TargetRef, TrafficRef
from responder.engine.executor import (
    RestorePoint,
    RetryPolicy,
    SafetyRules,
    StepOutcome,
    TrafficPoint,
    execute_restore,
    execute_rollback,
)
from responder.engine.steps import EVENT_REASON
from responder.ports import ClusterError
from responder.testing.emulator import Emulator, run_emulator, sample_canary_objects
from responder.traffic import Api
from responder.traffic.nginx import CANARY_ANNOTATION, NginxCanaryIngress

NS = "shop"
CANARY = "checkout-canary"
NGINX = TrafficRef("nginx", CANARY)
TRAFFIC_OFF = f"traffic_off:{NGINX.key}"  # how the step is recorded: "traffic_off:nginx/checkout-canary"
TARGET = TargetRef(namespace=NS, deployment=CANARY, traffic=(NGINX,))
INGRESS_API: Api = NginxCanaryIngress.api
SAFETY = SafetyRules(allowed_namespaces=frozenset({NS}))
DEPLOYMENTS = "apps/v1/deployments"
INGRESSES = "networking.k8s.io/v1/ingresses"


@dataclass
class Harness:
    """An emulator with the sample canary, the real adapter pointed at it, and a fake sleep."""

    emu: Emulator
    url: str
    cluster: KubeCluster
    sleeps: list[float] = field(default_factory=list)
    audited: list[StepOutcome] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def on_step(self, outcome: StepOutcome) -> None:
        self.audited.append(outcome)

    async def rollback(
        self,
        target: TargetRef = TARGET,
        *,
        cluster: KubeCluster | None = None,
        retry: RetryPolicy | None = None,
        dry_run: bool = False,
        skip: Collection[str] = (),
    ) -> list[StepOutcome]:
        return await execute_rollback(
            cluster or self.cluster,
            target,
            safety=SAFETY,
            retry=retry or RetryPolicy(),
            dry_run=dry_run,
            skip=skip,
            on_step=self.on_step,
            sleep=self.sleep,
            random=lambda: 0.5,
        )

    def canary_replicas(self) -> int:
        replicas: int = self.emu.get_object(DEPLOYMENTS, NS, CANARY)["spec"]["replicas"]
        return replicas

    def canary_annotation(self) -> str | None:
        annotations = self.emu.get_object(INGRESSES, NS, CANARY)["metadata"].get("annotations", {})
        return annotations.get(CANARY_ANNOTATION)

    def scale_requests(self) -> list[Any]:
        return [m for m in self.emu.mutations if m.subresource == "scale"]


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with run_emulator(sample_canary_objects()) as (emu, url):
        cluster = await open_cluster(host=url, request_timeout_s=5.0)
        try:
            yield Harness(emu=emu, url=url, cluster=cluster)
        finally:
            await cluster.close()


def results(outcomes: list[StepOutcome]) -> list[tuple[Step, StepResult]]:
    return [(o.step, o.result) for o in outcomes]


# --- the happy path and idempotence ---------------------------------------------------------------------


async def test_rollback_turns_traffic_off_then_scales_to_zero(h: Harness) -> None:
    outcomes = await h.rollback()
    assert results(outcomes) == [
        (Step.CHECK, StepResult.DONE),
        (Step.TRAFFIC_OFF, StepResult.DONE),
        (Step.SCALE_ZERO, StepResult.DONE),
        (Step.EVENT, StepResult.DONE),
    ]
    assert [o.id for o in outcomes] == ["check", TRAFFIC_OFF, "scale_zero", "event"]
    assert outcomes[1].ref == NGINX
    assert h.canary_annotation() == "false" and h.canary_replicas() == 0
    ingress_annotations = h.emu.get_object(INGRESSES, NS, CANARY)["metadata"]["annotations"]
    assert ingress_annotations["nginx.ingress.kubernetes.io/canary-weight"] == "10"  # merged, not replaced
    assert h.audited == outcomes and all(o.attempts == 1 for o in outcomes)


async def test_ingress_is_patched_before_the_scale_down_and_stable_objects_are_untouched(h: Harness) -> None:
    await h.rollback()
    touched = [(m.method, m.kind, m.name, m.subresource) for m in h.emu.mutations]
    assert touched[:2] == [("PATCH", "Ingress", CANARY, None), ("PATCH", "Deployment", CANARY, "scale")]
    assert touched[2][:2] == ("POST", "Event")
    assert h.emu.mutations_of("Deployment", "checkout") == []
    assert h.emu.mutations_of("Ingress", "checkout") == []
    assert h.emu.get_object(DEPLOYMENTS, NS, "checkout")["spec"]["replicas"] == 4


async def test_outcomes_record_the_previous_values_for_an_undo(h: Harness) -> None:
    check, traffic, scale, event = await h.rollback()
    assert check.before["labels"]["version"] == "canary" and check.before["images"] == ["checkout:1.5.0"]
    canary_routing = {CANARY_ANNOTATION: "true", "nginx.ingress.kubernetes.io/canary-weight": "10"}
    assert check.before["traffic"] == {NGINX.key: {"annotations": canary_routing}}  # decision-time facts
    assert traffic.before == {"annotations": {CANARY_ANNOTATION: "true"}}
    assert traffic.after == {"annotations": {CANARY_ANNOTATION: "false"}}
    assert (scale.before, scale.after) == ({"replicas": 2}, {"replicas": 0})
    assert event.after["reason"] == EVENT_REASON and "scaled from 2 to 0" in event.after["message"]


async def test_the_event_is_a_core_warning_event_on_the_deployment(h: Harness) -> None:
    await h.rollback()
    [post] = [m for m in h.emu.mutations if m.kind == "Event"]
    assert post.path == f"/api/v1/namespaces/{NS}/events"
    event = h.emu.get_object("v1/events", NS, post.name or "")
    assert (event["type"], event["reason"]) == ("Warning", "CanaryRolledBack")
    assert event["involvedObject"]["kind"] == "Deployment" and event["involvedObject"]["name"] == CANARY
    assert event["reportingComponent"] == "canary-responder" and event["source"]["component"] == "canary-responder"


async def test_a_second_rollback_is_all_noop_and_mutates_nothing(h: Harness) -> None:
    await h.rollback()
    mutations = len(h.emu.mutations)
    outcomes = await h.rollback()
    assert results(outcomes) == [
        (Step.CHECK, StepResult.DONE),
        (Step.TRAFFIC_OFF, StepResult.NOOP),
        (Step.SCALE_ZERO, StepResult.NOOP),
        (Step.EVENT, StepResult.NOOP),
    ]
    assert len(h.emu.mutations) == mutations


async def test_target_without_ingress_only_scales(h: Harness) -> None:
    outcomes = await h.rollback(TargetRef(namespace=NS, deployment=CANARY))
    assert [o.step for o in outcomes] == [Step.CHECK, Step.SCALE_ZERO, Step.EVENT]
    assert h.canary_annotation() == "true" and h.canary_replicas() == 0


# --- safety ---------------------------------------------------------------------------------------------


async def test_forged_target_pointing_at_the_stable_deployment_is_refused(h: Harness) -> None:
    forged = TargetRef(namespace=NS, deployment="checkout", traffic=(TrafficRef("nginx", "checkout"),))
    outcomes = await h.rollback(forged)
    [check] = outcomes
    assert (check.step, check.result, check.reason) == (Step.CHECK, StepResult.REFUSED, FailureReason.NOT_CANARY)
    assert check.before["labels"]["version"] == "stable"
    assert h.emu.mutations == []


async def test_namespace_outside_the_allowlist_is_refused_without_any_call(h: Harness) -> None:
    outcomes = await h.rollback(TargetRef(namespace="kube-system", deployment=CANARY, traffic=(NGINX,)))
    assert results(outcomes) == [(Step.CHECK, StepResult.REFUSED)]
    assert outcomes[0].reason is FailureReason.NAMESPACE_NOT_ALLOWED and outcomes[0].attempts == 0
    assert h.emu.calls == []  # not a single request reached the API


async def test_marker_is_rechecked_right_before_the_scale_down(h: Harness) -> None:
    async def relabel_after_traffic_off(outcome: StepOutcome) -> None:
        if outcome.step is Step.TRAFFIC_OFF:
            h.emu.put_object(
                DEPLOYMENTS, NS, CANARY, {**h.emu.get_object(DEPLOYMENTS, NS, CANARY), "metadata": {"labels": {}}}
            )

    outcomes = await execute_rollback(
        h.cluster, TARGET, safety=SAFETY, retry=RetryPolicy(), on_step=relabel_after_traffic_off, sleep=h.sleep
    )
    assert results(outcomes)[-1] == (Step.SCALE_ZERO, StepResult.REFUSED)
    assert outcomes[-1].reason is FailureReason.NOT_CANARY
    assert h.scale_requests() == [] and h.canary_replicas() == 2


async def test_an_audit_failure_stops_the_rollback(h: Harness) -> None:
    async def broken_audit(outcome: StepOutcome) -> None:
        raise RuntimeError("audit store down")

    with pytest.raises(RuntimeError):
        await execute_rollback(h.cluster, TARGET, safety=SAFETY, retry=RetryPolicy(), on_step=broken_audit)
    assert h.emu.mutations == []


# --- retries and failures -------------------------------------------------------------------------------


async def test_server_errors_are_retried_with_backoff(h: Harness) -> None:
    h.emu.add_fault(method="PATCH", path_contains="/ingresses/", status=503, times=3)
    outcomes = await h.rollback()
    traffic = outcomes[1]
    assert (traffic.result, traffic.attempts) == (StepResult.DONE, 4)
    assert traffic.before == {"annotations": {CANARY_ANNOTATION: "true"}}
    assert h.sleeps == pytest.approx([0.0375, 0.075, 0.15])  # 0.05 * 2**n, less half the 0.5 jitter
    assert h.canary_replicas() == 0


async def test_a_conflict_rereads_and_retries(h: Harness) -> None:
    h.emu.add_fault(method="PATCH", path_contains="/scale", status=409, times=1)
    requests_before = len(h.emu.calls)
    outcomes = await h.rollback()
    scale = outcomes[2]
    assert (scale.step, scale.result, scale.attempts) == (Step.SCALE_ZERO, StepResult.DONE, 2)
    assert scale.before == {"replicas": 2}
    calls = h.emu.calls[requests_before:]
    scale_path = f"/apis/apps/v1/namespaces/{NS}/deployments/{CANARY}/scale"
    first_patch = calls.index(("PATCH", scale_path))
    assert ("GET", scale_path) in calls[first_patch + 1 :]  # re-read before the second patch
    assert [m.status for m in h.scale_requests()] == [409, 200]


class RacingCluster(KubeCluster):
    """The real adapter, but another writer changes the Ingress right after our first read of it."""

    def __init__(self, inner: KubeCluster, *, emu: Emulator) -> None:
        super().__init__(inner.api_client())
        self._emu = emu
        self._raced = False

    async def get_object(self, api: Api, namespace: str, name: str) -> ObjectView:
        view = await super().get_object(api, namespace, name)
        if api == INGRESS_API and not self._raced:
            self._raced = True
            stored = self._emu.get_object(INGRESSES, namespace, name)
            stored["metadata"]["labels"] = {"touched": "by-someone-else"}
            self._emu.put_object(INGRESSES, namespace, name, stored)
        return view


async def test_a_real_stale_resource_version_is_a_conflict_that_is_retried(h: Harness) -> None:
    outcomes = await h.rollback(cluster=RacingCluster(h.cluster, emu=h.emu))
    traffic = outcomes[1]
    assert (traffic.result, traffic.attempts) == (StepResult.DONE, 2)
    assert [m.status for m in h.emu.mutations if m.kind == "Ingress"] == [409, 200]
    labels = h.emu.get_object(INGRESSES, NS, CANARY)["metadata"]["labels"]
    assert labels == {"touched": "by-someone-else"} and h.canary_annotation() == "false"  # both writes kept


async def test_forbidden_fails_with_manual_action_and_never_scales(h: Harness) -> None:
    h.emu.add_fault(method="PATCH", path_contains="/ingresses/", status=403)
    outcomes = await h.rollback()
    assert results(outcomes) == [(Step.CHECK, StepResult.DONE), (Step.TRAFFIC_OFF, StepResult.FAILED)]
    traffic = outcomes[1]
    assert traffic.reason is FailureReason.FORBIDDEN and traffic.attempts == 1
    assert traffic.message.startswith("manual action required:")
    assert traffic.before == {"annotations": {CANARY_ANNOTATION: "true"}}
    assert h.scale_requests() == [] and h.canary_replicas() == 2
    assert [m.kind for m in h.emu.mutations] == ["Ingress"]  # no Event either


@pytest.mark.parametrize(
    ("status", "reason"),
    [(401, FailureReason.UNAUTHORIZED), (404, FailureReason.NOT_FOUND), (422, FailureReason.INVALID)],
)
async def test_permanent_errors_are_not_retried(h: Harness, status: int, reason: FailureReason) -> None:
    h.emu.add_fault(method="PATCH", path_contains="/scale", status=status)
    outcomes = await h.rollback()
    assert results(outcomes)[-1] == (Step.SCALE_ZERO, StepResult.FAILED)
    assert (outcomes[-1].reason, outcomes[-1].attempts) == (reason, 1) and h.sleeps == []


async def test_exhausted_retries_fail_with_the_last_reason(h: Harness) -> None:
    h.emu.add_fault(method="PATCH", path_contains="/scale", status=500, times=None)
    outcomes = await h.rollback(retry=RetryPolicy(attempts=3))
    scale = outcomes[-1]
    assert (scale.result, scale.reason, scale.attempts) == (StepResult.FAILED, FailureReason.SERVER_ERROR, 3)
    assert "manual action required" in scale.message and len(h.sleeps) == 2


async def test_missing_deployment_is_refused_by_the_check(h: Harness) -> None:
    """Nothing to roll back is a refusal (reported, not retried), not a failure that would be retried for ever."""
    outcomes = await h.rollback(TargetRef(namespace=NS, deployment="ghost", traffic=(NGINX,)))
    assert results(outcomes) == [(Step.CHECK, StepResult.REFUSED)]
    assert outcomes[0].reason is FailureReason.NOT_FOUND and h.emu.mutations == []
    assert "does not exist" in outcomes[0].message


async def test_a_slow_api_times_out_and_is_retried(h: Harness) -> None:
    fast = await open_cluster(host=h.url, request_timeout_s=0.5)
    try:
        h.emu.add_fault(method="PATCH", path_contains="/ingresses/", delay=10.0, times=1)
        outcomes = await h.rollback(cluster=fast)
    finally:
        await fast.close()
    traffic = outcomes[1]
    assert (traffic.result, traffic.attempts) == (StepResult.DONE, 2)
    assert traffic.before == {"annotations": {CANARY_ANNOTATION: "true"}}
    assert 0.4 < traffic.duration_s < 5
    assert [m.status for m in h.emu.mutations if m.kind == "Ingress"] == [0, 200]


async def test_a_timeout_maps_to_timeout(h: Harness) -> None:
    fast = await open_cluster(host=h.url, request_timeout_s=0.3)
    try:
        h.emu.add_fault(method="GET", path_contains=f"/deployments/{CANARY}", delay=10.0, times=None)
        outcomes = await h.rollback(cluster=fast, retry=RetryPolicy(attempts=1))
    finally:
        await fast.close()
    assert (outcomes[0].result, outcomes[0].reason) == (StepResult.FAILED, FailureReason.TIMEOUT)


async def test_a_connection_reset_is_retried(h: Harness) -> None:
    h.emu.add_fault(method="PATCH", path_contains="/scale", reset=True, times=1)
    outcomes = await h.rollback()
    scale = outcomes[2]
    assert (scale.result, scale.attempts) == (StepResult.DONE, 2)
    assert [m.status for m in h.scale_requests()] == [0, 200]


async def test_a_persistent_reset_maps_to_connection(h: Harness) -> None:
    h.emu.add_fault(method="PATCH", path_contains="/scale", reset=True, times=None)
    outcomes = await h.rollback(retry=RetryPolicy(attempts=2))
    assert (outcomes[-1].result, outcomes[-1].reason) == (StepResult.FAILED, FailureReason.CONNECTION)


async def test_an_event_failure_is_recorded_but_undoes_nothing(h: Harness) -> None:
    h.emu.add_fault(method="POST", path_contains="/events", status=403)
    outcomes = await h.rollback()
    assert results(outcomes)[-1] == (Step.EVENT, StepResult.FAILED)
    assert outcomes[-1].reason is FailureReason.FORBIDDEN
    assert h.canary_annotation() == "false" and h.canary_replicas() == 0


# --- dry run and resume ---------------------------------------------------------------------------------


async def test_dry_run_reads_and_plans_but_mutates_nothing(h: Harness) -> None:
    outcomes = await h.rollback(dry_run=True)
    assert results(outcomes) == [
        (Step.CHECK, StepResult.DONE),
        (Step.TRAFFIC_OFF, StepResult.DRY_RUN),
        (Step.SCALE_ZERO, StepResult.DRY_RUN),
        (Step.EVENT, StepResult.DRY_RUN),
    ]
    traffic, scale = outcomes[1], outcomes[2]
    assert traffic.before == {"annotations": {CANARY_ANNOTATION: "true"}}
    assert traffic.after == {"annotations": {CANARY_ANNOTATION: "false"}}
    assert (scale.before, scale.after) == ({"replicas": 2}, {"replicas": 0})
    assert h.emu.mutations == []


async def test_dry_run_of_a_forged_target_is_still_refused(h: Harness) -> None:
    outcomes = await h.rollback(TargetRef(namespace=NS, deployment="checkout"), dry_run=True)
    assert results(outcomes) == [(Step.CHECK, StepResult.REFUSED)]


async def test_skipped_steps_are_not_run(h: Harness) -> None:
    outcomes = await h.rollback(skip={"check", TRAFFIC_OFF})
    assert [o.step for o in outcomes] == [Step.SCALE_ZERO, Step.EVENT]
    assert h.canary_annotation() == "true" and h.canary_replicas() == 0
    assert results(outcomes)[-1] == (Step.EVENT, StepResult.DONE)  # a resumed rollback still announces itself


async def test_skip_does_not_bypass_the_namespace_allowlist(h: Harness) -> None:
    outcomes = await h.rollback(TargetRef(namespace="prod", deployment=CANARY), skip={"check"})
    assert outcomes[0].reason is FailureReason.NAMESPACE_NOT_ALLOWED and h.emu.calls == []


# --- the adapter on its own -----------------------------------------------------------------------------


async def test_views_from_the_adapter(h: Harness) -> None:
    deployment = await h.cluster.get_deployment(NS, CANARY)
    assert (deployment.replicas, deployment.images) == (2, ("checkout:1.5.0",))
    assert deployment.labels["version"] == "canary" and deployment.resource_version
    scale = await h.cluster.get_scale(NS, CANARY)
    assert scale.replicas == 2 and scale.resource_version == deployment.resource_version


async def test_stale_resource_version_from_the_adapter_is_a_conflict(h: Harness) -> None:
    ingress = await h.cluster.get_object(INGRESS_API, NS, CANARY)
    await h.cluster.patch_object(
        INGRESS_API, NS, CANARY, patch={"metadata": {"annotations": {"x": "1"}}}, resource_version=""
    )
    with pytest.raises(ClusterError) as info:
        await h.cluster.patch_object(
            INGRESS_API,
            NS,
            CANARY,
            patch={"metadata": {"annotations": {"x": "2"}}},
            resource_version=ingress.resource_version,
        )
    assert info.value.reason is FailureReason.CONFLICT and info.value.status == 409 and info.value.retryable
    assert isinstance(info.value.__cause__, Exception)


async def test_none_deletes_an_annotation(h: Harness) -> None:
    ingress = await h.cluster.get_object(INGRESS_API, NS, CANARY)
    assert (ingress.namespace, ingress.name) == (NS, CANARY) and ingress.resource_version
    assert ingress.body["metadata"]["annotations"][CANARY_ANNOTATION] == "true"
    patched = await h.cluster.patch_object(
        INGRESS_API,
        NS,
        CANARY,
        patch={"metadata": {"annotations": {CANARY_ANNOTATION: None}}},
        resource_version=ingress.resource_version,
    )
    annotations = patched.body["metadata"]["annotations"]
    assert CANARY_ANNOTATION not in annotations
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "10"
    assert patched.resource_version != ingress.resource_version
    assert h.emu.get_object(INGRESSES, NS, CANARY)["metadata"]["annotations"] == annotations


async def test_ping(h: Harness) -> None:
    await h.cluster.ping()
    assert h.cluster.api_client() is not None


async def test_ping_of_an_unreachable_api_is_a_connection_error(h: Harness) -> None:
    async with run_emulator() as (_, url):
        dead_url = url
    cluster = await open_cluster(host=dead_url, request_timeout_s=1.0)
    try:
        with pytest.raises(ClusterError) as info:
            await cluster.ping()
    finally:
        await cluster.close()
    assert info.value.reason is FailureReason.CONNECTION


async def test_a_missing_kubeconfig_is_a_cluster_error(tmp_path: Any) -> None:
    with pytest.raises(ClusterError) as info:
        await open_cluster(kubeconfig=str(tmp_path / "missing"))
    assert info.value.reason is FailureReason.INVALID


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, FailureReason.SERVER_ERROR),
        (503, FailureReason.SERVER_ERROR),
        (504, FailureReason.SERVER_ERROR),
        (429, FailureReason.SERVER_ERROR),
        (409, FailureReason.CONFLICT),
        (403, FailureReason.FORBIDDEN),
        (401, FailureReason.UNAUTHORIZED),
        (404, FailureReason.NOT_FOUND),
        (422, FailureReason.INVALID),
        (400, FailureReason.INVALID),
    ],
)
def test_status_classification(status: int, reason: FailureReason) -> None:
    assert reason_for_status(status) is reason


def test_retry_delays_are_capped_exponential_with_jitter() -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=0.5, jitter=0.5)
    assert [policy.delay(n, random=0.0) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert policy.delay(1, random=1.0) == pytest.approx(0.05)


# --- restore waits for the pods before letting traffic in -------------------------------------------------


def _not_ready(h: Harness) -> None:
    """Pods scheduled but not ready: the emulator's /scale marks them ready at once, a real cluster does not."""
    deployment = h.emu.get_object(DEPLOYMENTS, NS, CANARY)
    deployment["status"] = {**deployment.get("status", {}), "readyReplicas": 0}
    h.emu.put_object(DEPLOYMENTS, NS, CANARY, deployment)


async def restore_after_rollback(h: Harness, *, ready_after_polls: int | None, timeout_s: float) -> list[StepOutcome]:
    await h.rollback()
    traffic = TrafficPoint(
        ref=NGINX,
        before={"annotations": {CANARY_ANNOTATION: "true"}},
        after={"annotations": {CANARY_ANNOTATION: "false"}},
    )
    point = RestorePoint(replicas=2, images=("checkout:1.5.0",), traffic=(traffic,))
    polls = 0

    async def slow_pods(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if ready_after_polls is not None and polls >= ready_after_polls:
            deployment = h.emu.get_object(DEPLOYMENTS, NS, CANARY)
            deployment["status"]["readyReplicas"] = 2
            h.emu.put_object(DEPLOYMENTS, NS, CANARY, deployment)

    async def on_step(outcome: StepOutcome) -> None:
        if outcome.step is Step.CHECK:
            return
        h.audited.append(outcome)

    original_set_replicas = h.cluster.set_replicas

    async def scale_then_unready(*args: Any, **kwargs: Any) -> Any:  # our own port, not the client library
        scaled = await original_set_replicas(*args, **kwargs)
        _not_ready(h)
        return scaled

    h.cluster.set_replicas = scale_then_unready  # type: ignore[method-assign]
    return await execute_restore(
        h.cluster,
        TARGET,
        point=point,
        safety=SAFETY,
        retry=RetryPolicy(),
        on_step=on_step,
        sleep=slow_pods,
        ready_timeout_s=timeout_s,
    )


async def test_restore_lets_traffic_in_only_once_the_pods_are_ready(h: Harness) -> None:
    outcomes = await restore_after_rollback(h, ready_after_polls=3, timeout_s=30)
    assert [(o.step, o.result) for o in outcomes] == [
        (Step.CHECK, StepResult.DONE),
        (Step.SCALE_RESTORE, StepResult.DONE),
        (Step.TRAFFIC_RESTORE, StepResult.DONE),
    ]
    assert outcomes[-1].id == f"traffic_restore:{NGINX.key}"
    assert h.canary_replicas() == 2 and h.canary_annotation() == "true"


async def test_restore_leaves_traffic_off_when_the_pods_never_get_ready(h: Harness) -> None:
    outcomes = await restore_after_rollback(h, ready_after_polls=None, timeout_s=5)
    scale = outcomes[-1]
    assert (scale.step, scale.result, scale.reason) == (Step.SCALE_RESTORE, StepResult.FAILED, FailureReason.NOT_READY)
    assert "manual action required" in scale.message and "traffic is still off" in scale.message
    assert h.canary_replicas() == 2 and h.canary_annotation() == "false"
