"""The rollback executor: the ordered, checked and retried Kubernetes steps that pull one canary out.

It owns the order and the safety of a rollback, and nothing else (it talks to the cluster only through
:class:`responder.ports.ClusterPort`, and leaves auditing to the ``on_step`` callback of the engine):

1. CHECK: the namespace must be allowed (checked before any call), and the live Deployment must carry the canary
   marker label; a refusal stops everything with nothing mutated.
2. TRAFFIC_OFF (when the target has an Ingress): set ``nginx.ingress.kubernetes.io/canary: "false"``. This goes
   first because scaling first would turn the canary's share of traffic into errors.
3. SCALE_ZERO: re-read the Deployment and re-check the marker right before mutating, then scale it to zero through
   the ``/scale`` subresource.
4. EVENT: a Warning Event ``CanaryRolledBack`` on the Deployment (a failure here undoes nothing).

Every step re-reads before it mutates and sends the resourceVersion it read, so a concurrent writer causes a
CONFLICT that is retried from a fresh read; a step finding the object already in the safe state is a NOOP, which
makes the whole rollback idempotent. Each outcome records the value seen first (``before``) so that an undo can put
it back exactly, even when an earlier attempt of the same step did land before timing out.
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from responder.core.model import DeploymentView, FailureReason, IngressView, Step, StepResult, TargetRef
from responder.ports import ClusterError, ClusterPort

__all__ = [
    "CANARY_ANNOTATION",
    "EVENT_REASON",
    "RetryPolicy",
    "SafetyRules",
    "StepOutcome",
    "RestorePoint",
    "execute_restore",
    "execute_rollback",
]

CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
EVENT_REASON = "CanaryRolledBack"
_MUTATING_STEPS = frozenset({Step.TRAFFIC_OFF, Step.SCALE_ZERO})
_STOPPING_RESULTS = frozenset({StepResult.REFUSED, StepResult.FAILED})


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


@dataclass
class _Memo:
    """State kept across the attempts of one step."""

    before: dict[str, Any] | None = None

    def first(self, value: dict[str, Any]) -> dict[str, Any]:
        """The value seen by the first attempt that got this far (later attempts may see our own change)."""
        if self.before is None:
            self.before = value
        return self.before


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
    restore: RestorePoint | None = None  # set for an undo
    outcomes: list[StepOutcome] = field(default_factory=list)


async def execute_rollback(
    cluster: ClusterPort,
    target: TargetRef,
    *,
    safety: SafetyRules,
    retry: RetryPolicy,
    dry_run: bool = False,
    skip: Collection[Step] = (),
    on_step: Callable[[StepOutcome], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
) -> list[StepOutcome]:
    """Roll back ``target``: check, traffic off, scale to zero, event; return the outcome of each step run.

    Steps in ``skip`` are not run (resuming after a crash), but the namespace allowlist is always enforced.
    A REFUSED or FAILED step stops the rollback (an EVENT failure is recorded, nothing is undone).
    ``on_step`` is awaited after each step; if it raises, the rollback stops there (never act unaudited).
    """
    run = _Run(cluster=cluster, target=target, safety=safety, retry=retry, dry_run=dry_run, sleep=sleep, random=random)
    if target.namespace not in safety.allowed_namespaces:
        await _finish(run, _namespace_refusal(target), on_step=on_step)
        return run.outcomes
    for step in _plan(target, skip=skip):
        outcome = await _run_step(run, step)
        await _finish(run, outcome, on_step=on_step)
        if outcome.result in _STOPPING_RESULTS:
            break
    return run.outcomes


async def _finish(run: _Run, outcome: StepOutcome, *, on_step: Callable[[StepOutcome], Awaitable[None]]) -> None:
    run.outcomes.append(outcome)
    await on_step(outcome)


def _plan(target: TargetRef, *, skip: Collection[Step]) -> list[Step]:
    steps = [Step.CHECK, Step.TRAFFIC_OFF, Step.SCALE_ZERO, Step.EVENT]
    return [s for s in steps if s not in skip and (s is not Step.TRAFFIC_OFF or target.ingress)]


def _namespace_refusal(target: TargetRef) -> StepOutcome:
    return StepOutcome(
        step=Step.CHECK,
        result=StepResult.REFUSED,
        before={},
        after={},
        attempts=0,
        duration_s=0.0,
        reason=FailureReason.NAMESPACE_NOT_ALLOWED,
        message=f"namespace {target.namespace!r} is not in the allowlist; nothing was touched",
    )


async def _run_step(run: _Run, step: Step, *, bodies: _Bodies | None = None) -> StepOutcome:
    """Run one step's body, retrying retryable cluster errors; each retry starts again from a fresh read."""
    started = time.monotonic()
    memo = _Memo()
    attempt = 0
    while True:
        attempt += 1
        try:
            result, before, after = await (bodies or _BODIES)[step](run, memo)
        except _Refusal as refusal:
            return _refused(step, refusal, attempts=attempt, started=started)
        except ClusterError as exc:
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
        before=memo.before or {},
        after={},
        attempts=attempts,
        duration_s=_since(started),
        reason=exc.reason,
        message=message,
    )


def _settled(before: dict[str, Any], after: dict[str, Any]) -> _Body:
    """Already in the safe state: NOOP if it was so from the start, DONE if an earlier attempt of ours landed."""
    return (StepResult.NOOP if before == after else StepResult.DONE), before, after


async def _read_canary(run: _Run) -> DeploymentView:
    """Read the live Deployment and refuse unless it carries the canary marker label."""
    target, safety = run.target, run.safety
    deployment = await run.cluster.get_deployment(target.namespace, target.deployment)
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
    }


async def _check(run: _Run, memo: _Memo) -> _Body:
    # The Ingress is read at the same time (a read, harmless even if the check then refuses): it saves the
    # traffic step one API round trip, which is most of its latency.
    deployment, run.ingress = await asyncio.gather(_read_canary(run), _read_ingress(run))
    facts = _deployment_facts(deployment)
    if run.ingress is not None:  # the canary routing at decision time (weight, header, cookie), for the report
        facts["ingress_annotations"] = {
            k: v for k, v in run.ingress.annotations.items() if k.startswith(CANARY_ANNOTATION)
        }
    return StepResult.DONE, facts, {}


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
    before = memo.first({"annotations": {CANARY_ANNOTATION: current}})
    planned: dict[str, Any] = {"annotations": {CANARY_ANNOTATION: "false"}}
    if current == "false":
        return _settled(before, planned)
    if run.dry_run:
        return StepResult.DRY_RUN, before, planned
    patched = await run.cluster.set_ingress_annotations(
        namespace, name, annotations={CANARY_ANNOTATION: "false"}, resource_version=ingress.resource_version
    )
    return StepResult.DONE, before, {"annotations": {CANARY_ANNOTATION: patched.annotations.get(CANARY_ANNOTATION)}}


async def _scale_zero(run: _Run, memo: _Memo) -> _Body:
    namespace, name = run.target.namespace, run.target.deployment
    # The labels may have changed since CHECK: re-check right before mutating (both reads at once).
    _, scale = await asyncio.gather(_read_canary(run), run.cluster.get_scale(namespace, name))
    before = memo.first({"replicas": scale.replicas})
    planned: dict[str, Any] = {"replicas": 0}
    if scale.replicas == 0:
        return _settled(before, planned)
    if run.dry_run:
        return StepResult.DRY_RUN, before, planned
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


async def execute_restore(
    cluster: ClusterPort,
    target: TargetRef,
    *,
    point: RestorePoint,
    safety: SafetyRules,
    retry: RetryPolicy,
    dry_run: bool = False,
    on_step: Callable[[StepOutcome], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
) -> list[StepOutcome]:
    """Undo a rollback: check nothing changed since, scale back up, then let canary traffic in again.

    The reverse order of the rollback: pods come back before the Ingress routes to them.
    """
    run = _Run(cluster=cluster, target=target, safety=safety, retry=retry, dry_run=dry_run, sleep=sleep, random=random)
    run.restore = point
    if target.namespace not in safety.allowed_namespaces:
        await _finish(run, _namespace_refusal(target), on_step=on_step)
        return run.outcomes
    steps = [Step.CHECK, Step.SCALE_RESTORE, *([Step.TRAFFIC_RESTORE] if point.traffic_step else [])]
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
    if scale.replicas != 0:
        raise _changed(f"the replica count (now {scale.replicas})")
    current = run.ingress.annotations.get(CANARY_ANNOTATION) if run.ingress else None
    if point.traffic_step and current != "false":
        raise _changed(f"the Ingress canary annotation (now {current!r})")
    return StepResult.DONE, facts, {}


async def _scale_restore(run: _Run, memo: _Memo) -> _Body:
    point = run.restore
    assert point is not None
    namespace, name = run.target.namespace, run.target.deployment
    _, scale = await asyncio.gather(_read_canary(run), run.cluster.get_scale(namespace, name))
    before = memo.first({"replicas": scale.replicas})
    planned: dict[str, Any] = {"replicas": point.replicas}
    if scale.replicas == point.replicas:
        return _settled(before, planned)
    if run.dry_run:
        return StepResult.DRY_RUN, before, planned
    scaled = await run.cluster.set_replicas(
        namespace, name, replicas=point.replicas, resource_version=scale.resource_version
    )
    return StepResult.DONE, before, {"replicas": scaled.replicas}


async def _traffic_restore(run: _Run, memo: _Memo) -> _Body:
    point = run.restore
    assert point is not None
    namespace, name = run.target.namespace, run.target.ingress or ""
    ingress = await run.cluster.get_ingress(namespace, name)
    current = ingress.annotations.get(CANARY_ANNOTATION)
    before = memo.first({"annotations": {CANARY_ANNOTATION: current}})
    planned: dict[str, Any] = {"annotations": {CANARY_ANNOTATION: point.annotation}}
    if current == point.annotation:
        return _settled(before, planned)
    if run.dry_run:
        return StepResult.DRY_RUN, before, planned
    patched = await run.cluster.set_ingress_annotations(
        namespace, name, annotations={CANARY_ANNOTATION: point.annotation}, resource_version=ingress.resource_version
    )
    return StepResult.DONE, before, {"annotations": {CANARY_ANNOTATION: patched.annotations.get(CANARY_ANNOTATION)}}


_Bodies = dict[Step, Callable[[_Run, _Memo], Awaitable[_Body]]]

_BODIES: _Bodies = {
    Step.CHECK: _check,
    Step.TRAFFIC_OFF: _traffic_off,
    Step.SCALE_ZERO: _scale_zero,
    Step.EVENT: _event,
}
_RESTORE_BODIES: _Bodies = {
    Step.CHECK: _restore_check,
    Step.SCALE_RESTORE: _scale_restore,
    Step.TRAFFIC_RESTORE: _traffic_restore,
}
