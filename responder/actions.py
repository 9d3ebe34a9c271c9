"""The rollback executor: the ordered, checked and retried Kubernetes steps that pull one canary out.

It owns the order and the safety of a rollback, and nothing else (it talks to the cluster only through
:class:`responder.ports.ClusterPort`, and leaves auditing to the ``on_step`` callback of the engine):

1. CHECK: the namespace must be allowed (checked before any call), and the live Deployment must carry the canary
   marker label; a refusal stops everything with nothing mutated.
2. TRAFFIC_OFF (when the target has an Ingress): set ``nginx.ingress.kubernetes.io/canary: "false"``. This goes
   first because scaling first would turn the canary's share of traffic into errors.
   ROUTE_OFF (when the target has an HTTPRoute): the canary backendRef's weight to 0, its weight to the stable
   backendRefs of the same rule (:mod:`responder.core.httproute`); the whole ``spec.rules`` is sent with the
   resourceVersion read, so a concurrent edit is a CONFLICT, retried from a fresh read.
3. SCALE_ZERO: re-read the Deployment and re-check the marker right before mutating, then scale it to zero through
   the ``/scale`` subresource.
4. ANNOTATE (only with a :class:`RejectionMark`, i.e. GitOps awareness on): record the rejected images, the
   Deployment revision and the incident as annotations on the canary Deployment.
5. EVENT: a Warning Event ``CanaryRolledBack`` on the Deployment.
ANNOTATE and EVENT only report: their failure is recorded but neither stops nor fails the rollback.

Every step re-reads before it mutates and sends the resourceVersion it read, so a concurrent writer causes a
CONFLICT that is retried from a fresh read; a step finding the object already in the safe state is a NOOP, which
makes the whole rollback idempotent.

Before-values (what an undo puts back) follow one rule for every step: the ``before`` of a change is the read that
preceded the write that landed. Before each write the step hands what it read and what it will set to ``on_intent``,
which the engine makes durable (write-ahead) before the write is sent. A write answered with a definite refusal
(409, 4xx) did not land, so its read is dropped; one whose outcome is unknown (timeout, connection lost, 5xx) may
have landed, so if a later read finds the safe state, the earlier read is the before-value. A resumed rollback
(after a crash) or a retried one passes the recorded intents and results as ``prior``: they are the before-values
when the live object is already in the safe state, whatever the crash point.
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from responder.core import httproute
from responder.core.model import (
    DeploymentView,
    FailureReason,
    HTTPRouteView,
    IngressView,
    Step,
    StepResult,
    TargetRef,
)
from responder.ports import ClusterError, ClusterPort

__all__ = [
    "CANARY_ANNOTATION",
    "EVENT_REASON",
    "RetryPolicy",
    "SafetyRules",
    "StepOutcome",
    "RejectionMark",
    "RestorePoint",
    "REJECTED_IMAGES",
    "REJECTED_AT",
    "REJECTED_INCIDENT",
    "REJECTED_REVISION",
    "changed_anything",
    "execute_restore",
    "execute_rollback",
]

CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
_READY_POLL_S = 1.0
EVENT_REASON = "CanaryRolledBack"
_MUTATING_STEPS = frozenset({Step.TRAFFIC_OFF, Step.ROUTE_OFF, Step.SCALE_ZERO})
_CHANGING_STEPS = frozenset({*_MUTATING_STEPS, Step.SCALE_RESTORE, Step.TRAFFIC_RESTORE, Step.ROUTE_RESTORE})
_STOPPING_RESULTS = frozenset({StepResult.REFUSED, StepResult.FAILED})
_REPORTING_STEPS = frozenset({Step.ANNOTATE, Step.EVENT})  # their failure neither stops nor fails a rollback
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REJECTED_IMAGES = "canary-responder.io/rejected-images"  # comma-separated, newest first, at most _REJECTED_KEEP
REJECTED_REVISION = "canary-responder.io/rejected-revision"
REJECTED_AT = "canary-responder.io/rejected-at"
REJECTED_INCIDENT = "canary-responder.io/incident"
_REJECTED_KEEP = 10


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Capped exponential backoff with jitter for retryable cluster errors."""

    attempts: int = 6  # total tries per step, the first one included
    base_delay_s: float = 0.05  # delay before the first retry, doubled for each further one
    max_delay_s: float = 2.0  # cap of the doubled delay
    jitter: float = 0.5  # up to this fraction of the delay is randomly taken off (spreads out retries)

    def delay(self, attempt: int, *, random: float) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based); ``random`` is in [0, 1)."""
        capped = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        return capped * (1.0 - self.jitter * random)


@dataclass(frozen=True, kw_only=True)
class SafetyRules:
    """What the executor may touch at all."""

    marker_label: str = "version"  # the live Deployment must carry marker_label=marker_value
    marker_value: str = "canary"
    allowed_namespaces: frozenset[str]
    clusters: Mapping[str, frozenset[str]] | None = None  # multi-cluster: each cluster's own allowlist

    def refusal(self, target: TargetRef) -> tuple[FailureReason, str] | None:
        """Why the executor must not touch ``target`` at all (checked before any call), or None."""
        if target.cluster:
            if not self.clusters or target.cluster not in self.clusters:
                return FailureReason.UNKNOWN_CLUSTER, f"cluster {target.cluster!r} is not configured"
            allowed, where = self.clusters[target.cluster], f" of cluster {target.cluster!r}"
        elif self.clusters:
            return FailureReason.UNKNOWN_CLUSTER, "no cluster named, but clusters are configured"
        else:
            allowed, where = self.allowed_namespaces, ""
        if target.namespace not in allowed:
            return FailureReason.NAMESPACE_NOT_ALLOWED, f"namespace {target.namespace!r} is not in the allowlist{where}"
        return None


@dataclass(frozen=True, kw_only=True)
class RejectionMark:
    """GitOps awareness: the rollback also annotates the canary Deployment with what it rejected and why."""

    incident: str
    at: str  # RFC 3339 UTC


@dataclass(frozen=True, kw_only=True)
class StepOutcome:
    """What one step did; ``before``/``after`` hold the values an undo needs (for DRY_RUN: the planned after)."""

    step: Step
    result: StepResult
    before: dict[str, Any]
    after: dict[str, Any]
    attempts: int
    duration_s: float
    reason: FailureReason | None = None
    message: str = ""


class _Refusal(Exception):
    """The target failed a safety check: stop, mutate nothing, never retry."""

    def __init__(self, reason: FailureReason, message: str, *, before: dict[str, Any]) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.before = before


_Body = tuple[StepResult, dict[str, Any], dict[str, Any]]  # result, before, after
Intent = Callable[[Step, dict[str, Any], dict[str, Any]], Awaitable[None]]  # (step, before, planned)


def changed_anything(outcomes: Collection[StepOutcome]) -> bool:
    """Whether any step changed the cluster (DONE on a mutating step): only such rollbacks count against the cap."""
    return any(o.step in _CHANGING_STEPS and o.result is StepResult.DONE for o in outcomes)


@dataclass
class _Memo:
    """What one step knows across its attempts: the before-value of a write of ours that may have landed."""

    landed: dict[str, Any] | None = None  # set (durably) before each write; dropped when the write is refused
    seen: dict[str, Any] | None = None  # the last read, for the record of a step that fails

    def settled(self, current: dict[str, Any]) -> dict[str, Any]:
        """The before-value when the object is found already in the safe state: our earlier write's read if
        one may have landed, else what is there now (NOOP)."""
        return self.landed if self.landed is not None else current


@dataclass(kw_only=True)
class _Run:
    """The inputs of one rollback, and what its steps learned so far."""

    cluster: ClusterPort
    target: TargetRef
    safety: SafetyRules
    retry: RetryPolicy
    dry_run: bool
    sleep: Callable[[float], Awaitable[None]]
    random: Callable[[], float]
    deployment: DeploymentView | None = None
    ingress: IngressView | None = None  # read alongside CHECK; used once by TRAFFIC_OFF's first attempt
    route: HTTPRouteView | None = None  # read alongside CHECK; used once by ROUTE_OFF's first attempt
    restore: RestorePoint | None = None  # set for an undo
    ready_timeout_s: float = 120.0  # restore: how long the restored pods may take to become ready
    mark: RejectionMark | None = None  # set when GitOps annotations are on
    outcomes: list[StepOutcome] = field(default_factory=list)
    on_intent: Intent | None = None  # write-ahead: awaited before every write
    prior: Mapping[Step, dict[str, Any]] = field(default_factory=dict)  # recorded before-values (resume, retry)
    memo: _Memo | None = None  # the running step's

    async def intend(self, step: Step, before: dict[str, Any], planned: dict[str, Any]) -> None:
        """Record (durably, through ``on_intent``) what was read and what will be set, then send the write.

        A retry that reads what the durable intent already holds (its earlier write was lost or refused by a 5xx)
        needs no new record: the write may go out even while the database is unwritable. A read that differs
        waits for the record, whatever the database's state (never a change without its before-value)."""
        if self.memo is not None and self.memo.landed == before:
            return
        if self.on_intent is not None:
            await self.on_intent(step, before, planned)
        if self.memo is not None:
            self.memo.landed = before


async def execute_rollback(
    cluster: ClusterPort,
    target: TargetRef,
    *,
    safety: SafetyRules,
    retry: RetryPolicy,
    dry_run: bool = False,
    skip: Collection[Step] = (),
    mark: RejectionMark | None = None,
    on_step: Callable[[StepOutcome], Awaitable[None]],
    on_intent: Intent | None = None,
    prior: Mapping[Step, dict[str, Any]] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
) -> list[StepOutcome]:
    """Roll back ``target``: check, traffic off, scale to zero, (annotate,) event; return each step's outcome.

    Steps in ``skip`` are not run (resuming after a crash), but the namespace allowlist is always enforced.
    A REFUSED or FAILED step stops the rollback (an ANNOTATE or EVENT failure is recorded, nothing is undone).
    ``on_intent`` is awaited before every write, ``on_step`` after each step; if either raises, the rollback stops
    there (never act unaudited). ``prior``: before-values recorded by an earlier run of this rollback.
    """
    run = _Run(cluster=cluster, target=target, safety=safety, retry=retry, dry_run=dry_run, sleep=sleep, random=random)
    run.mark, run.on_intent, run.prior = mark, on_intent, prior or {}
    if safety.refusal(target) is not None:
        await _finish(run, _namespace_refusal(target, safety), on_step=on_step)
        return run.outcomes
    for step in plan_steps(target, skip=skip, annotate=mark is not None):
        outcome = await _run_step(run, step)
        await _finish(run, outcome, on_step=on_step)
        if outcome.result in _STOPPING_RESULTS and step not in _REPORTING_STEPS:
            break
    return run.outcomes


async def _finish(run: _Run, outcome: StepOutcome, *, on_step: Callable[[StepOutcome], Awaitable[None]]) -> None:
    run.outcomes.append(outcome)
    await on_step(outcome)


def plan_steps(target: TargetRef, *, skip: Collection[Step] = (), annotate: bool = False) -> list[Step]:
    """The steps a rollback of ``target`` runs, in order."""
    wanted = {
        Step.CHECK: True,
        Step.TRAFFIC_OFF: bool(target.ingress),
        Step.ROUTE_OFF: bool(target.httproute),
        Step.SCALE_ZERO: True,
        Step.ANNOTATE: annotate,
        Step.EVENT: True,
    }
    return [s for s, on in wanted.items() if on and s not in skip]


def _namespace_refusal(target: TargetRef, safety: SafetyRules) -> StepOutcome:
    reason, why = safety.refusal(target) or (FailureReason.NAMESPACE_NOT_ALLOWED, "not allowed")
    return StepOutcome(
        step=Step.CHECK,
        result=StepResult.REFUSED,
        before={},
        after={},
        attempts=0,
        duration_s=0.0,
        reason=reason,
        message=f"{why}; nothing was touched",
    )


async def _run_step(run: _Run, step: Step, *, bodies: _Bodies | None = None) -> StepOutcome:
    """Run one step's body, retrying retryable cluster errors; each retry starts again from a fresh read."""
    started = time.monotonic()
    memo = run.memo = _Memo(landed=run.prior.get(step))
    attempt = 0
    while True:
        attempt += 1
        try:
            result, before, after = await (bodies or _BODIES)[step](run, memo)
        except _Refusal as refusal:
            return _refused(step, refusal, attempts=attempt, started=started)
        except ClusterError as exc:
            if exc.reason is FailureReason.CONFLICT or (exc.status is not None and 400 <= exc.status < 500):
                memo.landed = None  # the API refused the write: it did not land, and neither did its read count
            if not exc.retryable or attempt >= run.retry.attempts:
                return _failed(step, exc, memo=memo, attempts=attempt, started=started)
            await run.sleep(run.retry.delay(attempt, random=run.random()))
            continue
        return StepOutcome(
            step=step, result=result, before=before, after=after, attempts=attempt, duration_s=_since(started)
        )


def _since(started: float) -> float:
    return time.monotonic() - started


def _refused(step: Step, refusal: _Refusal, *, attempts: int, started: float) -> StepOutcome:
    return StepOutcome(
        step=step,
        result=StepResult.REFUSED,
        before=refusal.before,
        after={},
        attempts=attempts,
        duration_s=_since(started),
        reason=refusal.reason,
        message=refusal.message,
    )


def _failed(step: Step, exc: ClusterError, *, memo: _Memo, attempts: int, started: float) -> StepOutcome:
    if step is Step.EVENT:
        message = f"event not emitted (the rollback itself stands) after {attempts} attempt(s): {exc.message}"
    else:
        message = f"manual action required: {step.value} failed after {attempts} attempt(s): {exc.message}"
    return StepOutcome(
        step=step,
        result=StepResult.FAILED,
        before=memo.landed or memo.seen or {},
        after={},
        attempts=attempts,
        duration_s=_since(started),
        reason=exc.reason,
        message=message,
    )


def _settled(memo: _Memo, current: dict[str, Any], after: dict[str, Any]) -> _Body:
    """Already in the safe state: NOOP if it was so from the start, DONE if an earlier write of ours landed."""
    before = memo.settled(current)
    return (StepResult.NOOP if before == after else StepResult.DONE), before, after


def _observed(memo: _Memo, current: dict[str, Any]) -> dict[str, Any]:
    memo.seen = current
    return current


async def _read_canary(run: _Run) -> DeploymentView:
    """Read the live Deployment and refuse unless it carries the canary marker label."""
    target, safety = run.target, run.safety
    try:
        deployment = await run.cluster.get_deployment(target.namespace, target.deployment)
    except ClusterError as exc:
        if exc.reason is not FailureReason.NOT_FOUND:
            raise
        message = f"deployment {target.key} does not exist: nothing to roll back (check the target mapping)"
        raise _Refusal(FailureReason.NOT_FOUND, message, before={}) from exc
    found = deployment.labels.get(safety.marker_label)
    if found != safety.marker_value:
        message = (
            f"deployment {target.key} has {safety.marker_label}={found!r}, not {safety.marker_value!r}: "
            "not a canary, refusing to touch it"
        )
        raise _Refusal(FailureReason.NOT_CANARY, message, before=_deployment_facts(deployment))
    run.deployment = deployment
    return deployment


def _deployment_facts(deployment: DeploymentView) -> dict[str, Any]:
    return {
        "labels": dict(deployment.labels),
        "replicas": deployment.replicas,
        "resourceVersion": deployment.resource_version,
        "images": list(deployment.images),
        "revision": deployment.annotations.get(REVISION_ANNOTATION),
    }


async def _check(run: _Run, memo: _Memo) -> _Body:
    # The Ingress and HTTPRoute are read at the same time (reads, harmless even if the check then refuses): it
    # saves the traffic steps one API round trip each, which is most of their latency.
    deployment, run.ingress, run.route = await asyncio.gather(_read_canary(run), _read_ingress(run), _read_route(run))
    facts = _deployment_facts(deployment)
    if run.ingress is not None:  # the canary routing at decision time (weight, header, cookie), for the report
        facts["ingress_annotations"] = {
            k: v for k, v in run.ingress.annotations.items() if k.startswith(CANARY_ANNOTATION)
        }
    if run.route is not None:
        # A route that cannot be turned off (no such backendRef, no stable one beside it) fails here, before
        # anything is mutated, rather than after the Ingress step already ran.
        _route_change(run, run.route)
        facts["httproute_weights"] = _route_snapshot(run, run.route)
    return StepResult.DONE, facts, {}


async def _read_route(run: _Run) -> HTTPRouteView | None:
    if not run.target.httproute:
        return None
    return await run.cluster.get_httproute(run.target.namespace, run.target.httproute)


def _route_snapshot(run: _Run, route: HTTPRouteView) -> httproute.Snapshot:
    backend, namespace = run.target.canary_backend or "", run.target.namespace
    return httproute.snapshot(route.rules, httproute.canary_rules(route.rules, backend=backend, namespace=namespace))


def _route_change(run: _Run, route: HTTPRouteView) -> tuple[list[dict[str, Any]], httproute.Snapshot]:
    """The rules with the canary off and their snapshot; a route that does not fit is a permanent failure."""
    try:
        rules, _, after = httproute.turn_canary_off(
            route.rules, backend=run.target.canary_backend or "", namespace=run.target.namespace
        )
    except httproute.RouteProblem as exc:
        message = f"HTTPRoute {route.namespace}/{route.name}: {exc}"
        raise ClusterError(FailureReason.INVALID, message) from exc
    return rules, after


async def _route_off(run: _Run, memo: _Memo) -> _Body:
    namespace, name = run.target.namespace, run.target.httproute or ""
    route, run.route = run.route, None  # the CHECK's read serves the first attempt; retries re-read
    if route is None:
        route = await run.cluster.get_httproute(namespace, name)
    current = _observed(memo, {"rules": _route_snapshot(run, route)})
    if httproute.canary_is_off(route.rules, backend=run.target.canary_backend or "", namespace=namespace):
        return _settled(memo, current, current)
    rules, planned = _route_change(run, route)
    before = current
    if run.dry_run:
        return StepResult.DRY_RUN, before, {"rules": planned}
    await run.intend(Step.ROUTE_OFF, before, {"rules": planned})
    patched = await run.cluster.set_httproute_rules(
        namespace, name, rules=rules, resource_version=route.resource_version
    )
    return StepResult.DONE, before, {"rules": _route_snapshot(run, patched)}


async def _annotate(run: _Run, memo: _Memo) -> _Body:
    mark = run.mark
    assert mark is not None
    deployment = await _read_canary(run)
    current = {
        k: deployment.annotations.get(k) for k in (REJECTED_IMAGES, REJECTED_REVISION, REJECTED_AT, REJECTED_INCIDENT)
    }
    seen = _observed(memo, {"annotations": current})
    if current[REJECTED_INCIDENT] == mark.incident:
        return _settled(memo, seen, seen)
    before = seen
    known = [i for i in (current[REJECTED_IMAGES] or "").split(",") if i]
    images = list(dict.fromkeys([*deployment.images, *known]))[:_REJECTED_KEEP]
    wanted: dict[str, str | None] = {
        REJECTED_IMAGES: ",".join(images),
        REJECTED_REVISION: deployment.annotations.get(REVISION_ANNOTATION),
        REJECTED_AT: mark.at,
        REJECTED_INCIDENT: mark.incident,
    }
    if run.dry_run:
        return StepResult.DRY_RUN, before, {"annotations": wanted}
    await run.intend(Step.ANNOTATE, before, {"annotations": wanted})
    patched = await run.cluster.set_deployment_annotations(
        deployment.namespace, deployment.name, annotations=wanted, resource_version=deployment.resource_version
    )
    run.deployment = patched
    return StepResult.DONE, before, {"annotations": {k: patched.annotations.get(k) for k in wanted}}


async def _read_ingress(run: _Run) -> IngressView | None:
    if not run.target.ingress:
        return None
    return await run.cluster.get_ingress(run.target.namespace, run.target.ingress)


async def _traffic_off(run: _Run, memo: _Memo) -> _Body:
    namespace, name = run.target.namespace, run.target.ingress or ""
    ingress, run.ingress = run.ingress, None  # the CHECK's read serves the first attempt; retries re-read
    if ingress is None:
        ingress = await run.cluster.get_ingress(namespace, name)
    current = ingress.annotations.get(CANARY_ANNOTATION)
    before = _observed(memo, {"annotations": {CANARY_ANNOTATION: current}})
    planned: dict[str, Any] = {"annotations": {CANARY_ANNOTATION: "false"}}
    if current == "false":
        return _settled(memo, before, planned)
    if run.dry_run:
        return StepResult.DRY_RUN, before, planned
    await run.intend(Step.TRAFFIC_OFF, before, planned)
    patched = await run.cluster.set_ingress_annotations(
        namespace, name, annotations={CANARY_ANNOTATION: "false"}, resource_version=ingress.resource_version
    )
    return StepResult.DONE, before, {"annotations": {CANARY_ANNOTATION: patched.annotations.get(CANARY_ANNOTATION)}}


async def _scale_zero(run: _Run, memo: _Memo) -> _Body:
    namespace, name = run.target.namespace, run.target.deployment
    # The labels may have changed since CHECK: re-check right before mutating (both reads at once).
    _, scale = await asyncio.gather(_read_canary(run), run.cluster.get_scale(namespace, name))
    before = _observed(memo, {"replicas": scale.replicas})
    planned: dict[str, Any] = {"replicas": 0}
    if scale.replicas == 0:
        return _settled(memo, before, planned)
    if run.dry_run:
        return StepResult.DRY_RUN, before, planned
    await run.intend(Step.SCALE_ZERO, before, planned)
    scaled = await run.cluster.set_replicas(namespace, name, replicas=0, resource_version=scale.resource_version)
    return StepResult.DONE, before, {"replicas": scaled.replicas}


async def _event(run: _Run, memo: _Memo) -> _Body:
    mutating = [o for o in run.outcomes if o.step in _MUTATING_STEPS]
    if mutating and all(o.result is StepResult.NOOP for o in mutating):
        return StepResult.NOOP, {}, {}  # nothing changed in this run: nothing to announce
    message = _event_message(run)
    planned: dict[str, Any] = {"reason": EVENT_REASON, "message": message}
    if run.dry_run:
        return StepResult.DRY_RUN, {}, planned
    deployment = run.deployment or await run.cluster.get_deployment(run.target.namespace, run.target.deployment)
    await run.cluster.emit_event(deployment, reason=EVENT_REASON, message=message, warning=True)
    return StepResult.DONE, {}, planned


def _event_message(run: _Run) -> str:
    parts = [f"canary-responder rolled back canary {run.target.key}"]
    for outcome in run.outcomes:
        if outcome.step is Step.TRAFFIC_OFF:
            was = outcome.before.get("annotations", {}).get(CANARY_ANNOTATION)
            parts.append(f"canary traffic off on Ingress {run.target.ingress} ({CANARY_ANNOTATION} was {was!r})")
        elif outcome.step is Step.ROUTE_OFF:
            parts.append(f"backendRef {run.target.canary_backend} weighted 0 on HTTPRoute {run.target.httproute}")
        elif outcome.step is Step.SCALE_ZERO:
            parts.append(f"scaled from {outcome.before.get('replicas')} to 0 replicas")
    return "; ".join(parts)


# -- restore (undo) ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RestorePoint:
    """What a rollback recorded and what it left: the undo puts ``replicas`` and ``annotation`` back, but only
    while the live objects are still exactly as the rollback left them (same images, 0 replicas, traffic off)."""

    replicas: int
    annotation: str | None  # the canary annotation before the rollback; None: there was none (or no Ingress)
    images: tuple[str, ...]
    traffic_step: bool  # whether the rollback turned the Ingress off (and so the restore turns it back)
    route_before: list[dict[str, Any]] | None = None  # HTTPRoute weights before the rollback (a snapshot)
    route_after: list[dict[str, Any]] | None = None  # and as the rollback left them; None: no route step


async def execute_restore(
    cluster: ClusterPort,
    target: TargetRef,
    *,
    point: RestorePoint,
    safety: SafetyRules,
    retry: RetryPolicy,
    dry_run: bool = False,
    on_step: Callable[[StepOutcome], Awaitable[None]],
    on_intent: Intent | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
    ready_timeout_s: float = 120.0,
) -> list[StepOutcome]:
    """Undo a rollback: check nothing changed since, scale back up and wait until the pods are ready, then let
    canary traffic in again (the reverse order of the rollback). Pods that do not become ready within
    ``ready_timeout_s`` stop the restore with traffic still off: "manual action required".

    A restore that stopped half way (pods never ready, a crash) can simply be run again: each object may be as the
    rollback left it or already as the restore puts it back; anything else is a change by someone else, refused.
    """
    run = _Run(cluster=cluster, target=target, safety=safety, retry=retry, dry_run=dry_run, sleep=sleep, random=random)
    run.restore, run.ready_timeout_s, run.on_intent = point, ready_timeout_s, on_intent
    if safety.refusal(target) is not None:
        await _finish(run, _namespace_refusal(target, safety), on_step=on_step)
        return run.outcomes
    steps = [
        Step.CHECK,
        Step.SCALE_RESTORE,
        *([Step.TRAFFIC_RESTORE] if point.traffic_step else []),
        *([Step.ROUTE_RESTORE] if point.route_after is not None and target.httproute else []),
    ]
    for step in steps:
        outcome = await _run_step(run, step, bodies=_RESTORE_BODIES)
        await _finish(run, outcome, on_step=on_step)
        if outcome.result in _STOPPING_RESULTS:
            break
    return run.outcomes


def _changed(what: str) -> _Refusal:
    return _Refusal(FailureReason.CHANGED_SINCE, f"{what} changed since the rollback; not restoring", before={})


async def _restore_check(run: _Run, memo: _Memo) -> _Body:
    point = run.restore
    assert point is not None
    deployment, run.ingress = await asyncio.gather(_read_canary(run), _read_ingress(run))
    scale = await run.cluster.get_scale(run.target.namespace, run.target.deployment)
    facts = {**_deployment_facts(deployment), "scale": scale.replicas}
    if tuple(deployment.images) != point.images:
        raise _changed(f"the canary's images ({list(deployment.images)} vs {list(point.images)})")
    if scale.replicas not in (0, point.replicas):
        raise _changed(f"the replica count (now {scale.replicas}, neither 0 nor {point.replicas})")
    current = run.ingress.annotations.get(CANARY_ANNOTATION) if run.ingress else None
    if point.traffic_step and current not in ("false", point.annotation):
        raise _changed(f"the Ingress canary annotation (now {current!r})")
    if point.route_after is not None and run.target.httproute:
        route = await run.cluster.get_httproute(run.target.namespace, run.target.httproute)
        indices = [int(entry["rule"]) for entry in point.route_after]
        now = httproute.snapshot(route.rules, indices)
        if now not in (point.route_after, point.route_before):
            raise _changed(f"the HTTPRoute weights (now {now})")
        facts["httproute_weights"] = now
    return StepResult.DONE, facts, {}


async def _scale_restore(run: _Run, memo: _Memo) -> _Body:
    point = run.restore
    assert point is not None
    namespace, name = run.target.namespace, run.target.deployment
    _, scale = await asyncio.gather(_read_canary(run), run.cluster.get_scale(namespace, name))
    before = _observed(memo, {"replicas": scale.replicas})
    planned: dict[str, Any] = {"replicas": point.replicas}
    if scale.replicas == point.replicas:
        if not run.dry_run:
            await _wait_ready(run, point.replicas)  # a restore run again after its pods were not ready in time
        return _settled(memo, before, planned)
    if run.dry_run:
        return StepResult.DRY_RUN, before, planned
    await run.intend(Step.SCALE_RESTORE, before, planned)
    scaled = await run.cluster.set_replicas(
        namespace, name, replicas=point.replicas, resource_version=scale.resource_version
    )
    await _wait_ready(run, point.replicas)
    return StepResult.DONE, before, {"replicas": scaled.replicas}


async def _wait_ready(run: _Run, replicas: int) -> None:
    """Traffic comes back only to pods that can take it: wait for the restored replicas to be ready."""
    polls = max(1, int(run.ready_timeout_s / _READY_POLL_S))
    for _ in range(polls):
        deployment = await run.cluster.get_deployment(run.target.namespace, run.target.deployment)
        if deployment.ready_replicas >= replicas:
            return
        await run.sleep(_READY_POLL_S)
    raise ClusterError(
        FailureReason.NOT_READY,
        f"scaled back to {replicas} replicas, but they were not ready within {run.ready_timeout_s:.0f}s;"
        " canary traffic is still off",
    )


async def _traffic_restore(run: _Run, memo: _Memo) -> _Body:
    point = run.restore
    assert point is not None
    namespace, name = run.target.namespace, run.target.ingress or ""
    ingress = await run.cluster.get_ingress(namespace, name)
    current = ingress.annotations.get(CANARY_ANNOTATION)
    before = _observed(memo, {"annotations": {CANARY_ANNOTATION: current}})
    planned: dict[str, Any] = {"annotations": {CANARY_ANNOTATION: point.annotation}}
    if current == point.annotation:
        return _settled(memo, before, planned)
    if run.dry_run:
        return StepResult.DRY_RUN, before, planned
    await run.intend(Step.TRAFFIC_RESTORE, before, planned)
    patched = await run.cluster.set_ingress_annotations(
        namespace, name, annotations={CANARY_ANNOTATION: point.annotation}, resource_version=ingress.resource_version
    )
    return StepResult.DONE, before, {"annotations": {CANARY_ANNOTATION: patched.annotations.get(CANARY_ANNOTATION)}}


async def _route_restore(run: _Run, memo: _Memo) -> _Body:
    point = run.restore
    assert point is not None and point.route_before is not None
    namespace, name = run.target.namespace, run.target.httproute or ""
    route = await run.cluster.get_httproute(namespace, name)
    indices = [int(entry["rule"]) for entry in point.route_before]
    before = _observed(memo, {"rules": httproute.snapshot(route.rules, indices)})
    planned: dict[str, Any] = {"rules": point.route_before}
    if before["rules"] == point.route_before:
        return _settled(memo, before, planned)
    try:
        rules = httproute.apply_snapshot(route.rules, point.route_before)
    except httproute.RouteProblem as exc:
        raise _changed(f"the HTTPRoute ({exc})") from exc
    if run.dry_run:
        return StepResult.DRY_RUN, before, planned
    await run.intend(Step.ROUTE_RESTORE, before, planned)
    patched = await run.cluster.set_httproute_rules(
        namespace, name, rules=rules, resource_version=route.resource_version
    )
    return StepResult.DONE, before, {"rules": httproute.snapshot(patched.rules, indices)}


_Bodies = dict[Step, Callable[[_Run, _Memo], Awaitable[_Body]]]

_BODIES: _Bodies = {
    Step.CHECK: _check,
    Step.TRAFFIC_OFF: _traffic_off,
    Step.ROUTE_OFF: _route_off,
    Step.SCALE_ZERO: _scale_zero,
    Step.ANNOTATE: _annotate,
    Step.EVENT: _event,
}
_RESTORE_BODIES: _Bodies = {
    Step.CHECK: _restore_check,
    Step.SCALE_RESTORE: _scale_restore,
    Step.TRAFFIC_RESTORE: _traffic_restore,
    Step.ROUTE_RESTORE: _route_restore,
}
