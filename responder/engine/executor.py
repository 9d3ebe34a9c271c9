"""The rollback executor: the ordered, checked and retried steps that pull one canary out, and put it back.

It owns the order and the safety of a rollback, and nothing else: it talks to the cluster only through
:class:`responder.ports.ClusterPort`, to traffic objects only through their switch (:mod:`responder.traffic`), and
leaves recording to the ``on_intent`` / ``on_step`` callbacks of the engine. The step bodies are in
:mod:`responder.engine.steps`.

A rollback: CHECK (the namespace allowed, the live Deployment carries the canary marker, every traffic object can
be turned off: a refusal or a plan that cannot complete stops here with nothing changed), then one TRAFFIC_OFF per
traffic object of the target (first: scaling first would turn the canary's share of traffic into errors),
EVIDENCE (optional: the canary pods' status, logs and Events, read within a time budget while the pods still exist,
:mod:`responder.engine.evidence`), SCALE_ZERO through ``/scale`` (re-checking the marker right before), ANNOTATE
(GitOps, optional) and EVENT. EVIDENCE, ANNOTATE and EVENT only report: their failure neither stops nor fails the
rollback. A restore runs CHECK (nothing changed
since, beyond being half restored already), SCALE_RESTORE (waiting for the pods to be ready) and one
TRAFFIC_RESTORE per traffic object.

Every step re-reads before it writes and sends the resourceVersion it read, so a concurrent writer causes a
CONFLICT retried from a fresh read; a step finding the object already in the wanted state is a NOOP, which makes
the whole rollback idempotent. Before-values follow one rule: the ``before`` of a change is the read that preceded
the write that landed. Before each write the step hands what it read and what it will set to ``on_intent``, which
the engine makes durable first (write-ahead). A write refused with a definite answer (409, 4xx) did not land, so its
read is dropped; one whose outcome is unknown (timeout, lost connection, 5xx) may have landed, so when a later read
finds the wanted state, the earlier read is the before-value. A resumed or retried rollback passes the recorded
values as ``prior``: they are the before-values when the live object is already in the wanted state.
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from responder.core.model import FailureReason, Step, StepResult, TargetRef
from responder.engine.run import (
    CHANGING_STEPS,
    REPORTING_STEPS,
    STOPPING_RESULTS,
    EvidenceOptions,
    Intent,
    Memo,
    OnStep,
    Planned,
    Refusal,
    RejectionMark,
    RestorePoint,
    RetryPolicy,
    Run,
    SafetyRules,
    StepBody,
    StepOutcome,
    TrafficPoint,
)
from responder.engine.steps import RESTORE_BODIES, ROLLBACK_BODIES
from responder.ports import ClusterError, ClusterPort

ARGO_ROLLOUTS = "argo-rollouts"  # a target's delegate: an Argo Rollouts Rollout, rolled back by aborting its update


def plan_steps(
    target: TargetRef, *, skip: Collection[str] = (), annotate: bool = False, evidence: bool = False
) -> list[Planned]:
    """The steps a rollback of ``target`` runs, in order (``skip``: step ids already done, resuming)."""
    if target.delegate == ARGO_ROLLOUTS:  # the Rollouts controller moves traffic and pods once its update is aborted
        steps = [Planned(Step.ABORT)]
    elif target.delegate:  # another controller rolls it back (Flagger asks the gate): the decision is the action
        steps = [Planned(Step.DELEGATE)]
    else:
        steps = [Planned(Step.CHECK), *(Planned(Step.TRAFFIC_OFF, ref) for ref in target.traffic)]
        steps += [*([Planned(Step.EVIDENCE)] if evidence else []), Planned(Step.SCALE_ZERO)]
        steps += [*([Planned(Step.ANNOTATE)] if annotate else []), Planned(Step.EVENT)]
    return [s for s in steps if s.id not in skip]


def changed_anything(outcomes: Collection[StepOutcome]) -> bool:
    """Whether any step changed the cluster (DONE on a changing step): only such rollbacks count against the cap."""
    return any(o.step in CHANGING_STEPS and o.result is StepResult.DONE for o in outcomes)


async def execute_rollback(
    cluster: ClusterPort,
    target: TargetRef,
    *,
    safety: SafetyRules,
    retry: RetryPolicy,
    dry_run: bool = False,
    skip: Collection[str] = (),
    mark: RejectionMark | None = None,
    on_step: OnStep,
    on_intent: Intent | None = None,
    prior: Mapping[str, dict[str, Any]] | None = None,
    guard: Callable[[str], None] | None = None,
    ignore_stable: bool = False,
    evidence: EvidenceOptions | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
) -> list[StepOutcome]:
    """Roll back ``target``: check, traffic off, scale to zero, (annotate,) event; return each step's outcome.

    Steps in ``skip`` (ids) are not run (resuming after a crash), but the namespace allowlist is always enforced.
    A REFUSED or FAILED step stops the rollback (an ANNOTATE or EVENT failure is recorded, nothing is undone).
    ``on_intent`` is awaited before every write, ``on_step`` after each step; if either raises, the rollback stops
    there (never act unaudited). ``prior``: before-values recorded by an earlier run of this rollback, by step id.
    ``guard(step)`` is called right before every mutation and raises when this replica may not act any more.
    """
    run = Run(cluster=cluster, target=target, safety=safety, retry=retry, dry_run=dry_run, sleep=sleep, random=random)
    run.mark, run.on_intent, run.prior, run.guard = mark, on_intent, prior or {}, guard
    run.ignore_stable, run.evidence = ignore_stable, evidence
    if safety.refusal(target) is not None:
        await _finish(run, _namespace_refusal(target, safety), on_step=on_step)
        return run.outcomes
    for planned in plan_steps(target, skip=skip, annotate=mark is not None, evidence=evidence is not None):
        outcome = await run_step(run, planned, ROLLBACK_BODIES[planned.step])
        await _finish(run, outcome, on_step=on_step)
        if outcome.result in STOPPING_RESULTS and planned.step not in REPORTING_STEPS:
            break
    return run.outcomes


async def execute_restore(
    cluster: ClusterPort,
    target: TargetRef,
    *,
    point: RestorePoint,
    safety: SafetyRules,
    retry: RetryPolicy,
    dry_run: bool = False,
    on_step: OnStep,
    on_intent: Intent | None = None,
    guard: Callable[[str], None] | None = None,
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
    run = Run(cluster=cluster, target=target, safety=safety, retry=retry, dry_run=dry_run, sleep=sleep, random=random)
    run.restore, run.ready_timeout_s, run.on_intent, run.guard = point, ready_timeout_s, on_intent, guard
    if safety.refusal(target) is not None:
        await _finish(run, _namespace_refusal(target, safety), on_step=on_step)
        return run.outcomes
    if point.aborted is not None:  # an aborted Argo Rollout: retry is the whole undo
        steps = [Planned(Step.RETRY)]
    else:
        steps = [Planned(Step.CHECK), Planned(Step.SCALE_RESTORE)]
        steps += [Planned(Step.TRAFFIC_RESTORE, p.ref) for p in point.traffic]
    for planned in steps:
        outcome = await run_step(run, planned, RESTORE_BODIES[planned.step])
        await _finish(run, outcome, on_step=on_step)
        if outcome.result in STOPPING_RESULTS:
            break
    return run.outcomes


async def _finish(run: Run, outcome: StepOutcome, *, on_step: OnStep) -> None:
    run.outcomes.append(outcome)
    await on_step(outcome)


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


async def run_step(run: Run, planned: Planned, body: StepBody) -> StepOutcome:
    """Run one step's body, retrying retryable cluster errors; each retry starts again from a fresh read."""
    started = time.monotonic()
    memo = run.memo = Memo(landed=run.prior.get(planned.id))
    run.planned = planned
    attempt = 0
    while True:
        attempt += 1
        try:
            result, before, after = await body(run, memo, planned)
        except Refusal as refusal:
            return _refused(planned, refusal, attempts=attempt, started=started)
        except ClusterError as exc:
            if exc.reason is FailureReason.CONFLICT or (exc.status is not None and 400 <= exc.status < 500):
                memo.landed = None  # the API refused the write: it did not land, and neither did its read count
            if not exc.retryable or run.retry.exhausted(attempt):
                return _failed(planned, exc, memo=memo, attempts=attempt, started=started)
            await run.sleep(run.retry.delay(attempt, random=run.random()))
            continue
        leftover, note = run.leftover.pop(planned.id, None), run.notes.pop(planned.id, "")
        return StepOutcome(
            step=planned.step,
            ref=planned.ref,
            result=result,
            before=before,
            after=after,
            attempts=attempt,
            duration_s=time.monotonic() - started,
            reason=FailureReason.INCOMPLETE if leftover else None,
            message=f"manual action required: {leftover}" if leftover else note,
        )


def _refused(planned: Planned, refusal: Refusal, *, attempts: int, started: float) -> StepOutcome:
    return StepOutcome(
        step=planned.step,
        ref=planned.ref,
        result=StepResult.REFUSED,
        before=refusal.before,
        after={},
        attempts=attempts,
        duration_s=time.monotonic() - started,
        reason=refusal.reason,
        message=refusal.message,
    )


def _failed(planned: Planned, exc: ClusterError, *, memo: Memo, attempts: int, started: float) -> StepOutcome:
    if planned.step is Step.EVENT:
        message = f"event not emitted (the rollback itself stands) after {attempts} attempt(s): {exc.message}"
    else:
        message = f"manual action required: {planned.id} failed after {attempts} attempt(s): {exc.message}"
    return StepOutcome(
        step=planned.step,
        ref=planned.ref,
        result=StepResult.FAILED,
        before=memo.landed or memo.seen or {},
        after={},
        attempts=attempts,
        duration_s=time.monotonic() - started,
        reason=exc.reason,
        message=message,
    )


__all__ = [
    "ARGO_ROLLOUTS",
    "CHANGING_STEPS",
    "REPORTING_STEPS",
    "EvidenceOptions",
    "Intent",
    "Planned",
    "RejectionMark",
    "RestorePoint",
    "RetryPolicy",
    "SafetyRules",
    "StepOutcome",
    "TrafficPoint",
    "changed_anything",
    "execute_restore",
    "execute_rollback",
    "plan_steps",
]
