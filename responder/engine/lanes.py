"""Lanes: one serial queue per target, where rollbacks, retries and restores of that target run in order.

Two canaries roll back in parallel; one target never sees concurrent actions. A rollback job runs the executor
(:mod:`responder.engine.executor`): no step mutates anything before the job's intent is durable (``durable``), each
write is preceded by its durable write-ahead record, each step's outcome is recorded as it completes, and the final
status goes back to the engine (``finished``), which tells the decision core. One piece of work that raises is
reported (:class:`responder.health.Health`) and the lane goes on with the next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from responder.core.model import FailureReason, Step, StepResult, TargetRef, iso
from responder.engine.durable import Durable
from responder.engine.executor import (
    REPORTING_STEPS,
    EvidenceOptions,
    Planned,
    RejectionMark,
    RetryPolicy,
    SafetyRules,
    StepOutcome,
    changed_anything,
    execute_rollback,
    plan_steps,
)
from responder.engine.leadership import NotLeading
from responder.engine.recorder import Recorder, Started
from responder.engine.resume import stale_reason
from responder.engine.steps import REJECTED_AT
from responder.health import Health
from responder.metrics import Metrics
from responder.ports import ClusterError, ClusterPort
from responder.store import RollbackRecord, Store

log = logging.getLogger("responder.engine")

Work = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Job:
    """One run of a rollback: its first run, a retry, or a resume after a restart."""

    incident: str
    target: TargetRef
    received_at: float
    skip: frozenset[str] = frozenset()  # step ids already done (resuming): reporting steps only
    prior: dict[str, dict[str, Any]] | None = None  # None: read the recorded before-values first (resume, retry)
    attempt: int = 0  # 0 for the first run, n for the n-th retry
    durable: asyncio.Event = field(default_factory=asyncio.Event)  # set once the intent is committed
    resumed: RollbackRecord | None = None  # taken up from the store: re-validated before anything is sent
    abandoned: str | None = None  # why a resumed rollback was closed instead of resumed
    rejected_at: str | None = None  # GitOps: when the canary was rejected, taken once (annotation and webhook)
    ignore_stable: bool = False  # a human asked to act although the stable Deployment has no ready replica

    @property
    def started(self) -> Started:
        return Started(incident=self.incident, target=self.target, received_at=self.received_at, attempt=self.attempt)


@dataclass(frozen=True, slots=True, kw_only=True)
class LaneOptions:
    safety: SafetyRules
    retry: RetryPolicy
    dry_run: bool = False
    annotate: bool = False
    resume_within: timedelta = timedelta(minutes=10)  # a half-done rollback older than this is not resumed
    evidence: EvidenceOptions | None = None  # capture the canary pods' evidence before the scale-down

    def plan(self, target: TargetRef) -> list[Planned]:
        """The steps a rollback of ``target`` runs with these options."""
        return plan_steps(target, annotate=self.annotate, evidence=self.evidence is not None)


Finished = Callable[[Job, str, bool, list[StepOutcome]], Awaitable[None]]


class Lanes:
    def __init__(
        self,
        *,
        store: Store,
        durable: Durable,
        recorder: Recorder,
        metrics: Metrics,
        health: Health,
        options: LaneOptions,
        cluster: ClusterPort,
        clusters: Mapping[str, ClusterPort],
        finished: Finished,
        clock: Callable[[], Any],
    ) -> None:
        self.store, self.durable, self.recorder = store, durable, recorder
        self.metrics, self.health, self.options = metrics, health, options
        self.cluster = cluster  # the home cluster: single-cluster targets (cluster "")
        self.clusters = clusters  # multi-cluster: one connection per cluster
        self.finished, self.clock = finished, clock
        self._lanes: dict[str, asyncio.Queue[Work]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.running: dict[str, Job] = {}  # the rollback each lane is running now, by incident

    @property
    def busy(self) -> bool:
        return bool(self._lanes)

    def cluster_for(self, target: TargetRef) -> ClusterPort:
        """The connection to the target's cluster; one that refuses every call when the cluster is unknown
        (the executor's safety check refuses such a target first: this is the second line)."""
        if not target.cluster:
            return self.cluster
        return self.clusters.get(target.cluster) or cast(ClusterPort, _UnknownCluster(target.cluster))

    def dispatch(self, job: Job) -> None:
        self.enqueue(job.target.key, lambda: self._execute(job))

    async def run(self, job: Job) -> None:
        """Run ``job`` now (the caller is already in the target's lane)."""
        await self._execute(job)

    def enqueue(self, key: str, work: Work) -> None:
        """Run ``work`` in the target's lane, after whatever the lane already holds (rollbacks, restores)."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = asyncio.Queue()
            task = asyncio.create_task(self._lane(key, lane), name=f"lane-{key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        lane.put_nowait(work)

    async def wait_idle(self, within: float) -> None:
        """Wait up to ``within`` seconds for every lane to finish what it holds."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._lanes.clear()

    async def _lane(self, key: str, lane: asyncio.Queue[Work]) -> None:
        """Serial executor for one target; ends (and is recreated on demand) when its queue is empty."""
        try:
            while not lane.empty():
                try:
                    await lane.get_nowait()()
                except Exception as exc:
                    self.health.crashed("lane", exc)
        finally:
            self._lanes.pop(key, None)

    async def _execute(self, job: Job) -> None:
        self.running[job.incident] = job
        try:
            await self._run_job(job)
        finally:
            self.running.pop(job.incident, None)

    async def _run_job(self, job: Job) -> None:
        async def on_step(outcome: StepOutcome) -> None:
            await self._record_step(job, outcome)

        async def on_intent(planned: Planned, before: dict[str, Any], wanted: dict[str, Any]) -> None:
            await job.durable.wait()
            target = job.target.key
            await self.durable.write(
                lambda tx: self.recorder.intent(tx, job.incident, target, planned, before, wanted), urgent=True
            )

        outcomes: list[StepOutcome] = []
        options = self.options
        if job.resumed is not None:
            try:
                job.abandoned = await self._stale(job, job.resumed)
            except NotLeading:
                return
            if job.abandoned is not None:
                log.error("rollback %s of %s ABANDONED, not resumed: %s", job.incident, job.target.key, job.abandoned)
                await self._finish(job, "abandoned", False, [])
                return
        try:
            prior = job.prior if job.prior is not None else await self._prior(job.incident)
            mark = None
            if options.annotate:  # the GitOps webhook then carries the very time written on the Deployment
                job.rejected_at = job.rejected_at or _annotated_at(job.resumed) or iso(self.clock())
                mark = RejectionMark(incident=job.incident, at=job.rejected_at)
            outcomes = await execute_rollback(
                self.cluster_for(job.target),
                job.target,
                safety=options.safety,
                retry=options.retry,
                dry_run=options.dry_run,
                skip=job.skip,
                mark=mark,
                on_step=on_step,
                on_intent=on_intent,
                prior=prior,
                guard=self.durable.authority.check,
                ignore_stable=job.ignore_stable,
                evidence=options.evidence,
            )
            status, changed = final_status(outcomes), changed_anything(outcomes) or options.dry_run
        except NotLeading as exc:
            # Deposed (or no longer certain to lead) in the middle: no result is recorded, nothing more is sent.
            # The rollback stays pending in the store, and the next leader resumes it after re-validating it.
            log.warning("rollback %s of %s stopped here: %s", job.incident, job.target.key, exc)
            return
        except Exception as exc:  # a bug, not a cluster failure: never leave the rollback silent
            self.health.crashed("rollback", exc)
            status, changed = "failed", True  # unknown: assume it changed something (the cap stays counted)
            error = {"incident": job.incident, "error": type(exc).__name__}
            await self.durable.write(lambda tx: tx.append_audit("rollback.error", error, target=job.target.key))
        await self._finish(job, status, changed, outcomes)

    async def _finish(self, job: Job, status: str, changed: bool, outcomes: list[StepOutcome]) -> None:
        try:
            await self.finished(job, status, changed, outcomes)
        except NotLeading as exc:
            log.warning("the result of rollback %s was not recorded here: %s", job.incident, exc)

    async def _stale(self, job: Job, record: RollbackRecord) -> str | None:
        """Re-validate a rollback taken up from the store (:mod:`responder.engine.resume`); the live reads are
        retried like a step's, and a cluster that cannot be read abandons it (loudly) rather than act blind."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await stale_reason(
                    self.cluster_for(job.target),
                    record,
                    since_restore=await self.store.rollbacks_since_restore(record.key),
                    now=self.clock(),
                    max_age=self.options.resume_within,
                )
            except ClusterError as exc:
                if not exc.retryable or self.options.retry.exhausted(attempt):
                    return f"the live objects could not be read to re-validate it: {exc.message}"
                await asyncio.sleep(self.options.retry.delay(attempt))

    async def _prior(self, incident: str) -> dict[str, dict[str, Any]]:
        """The before-values recorded by earlier runs of this rollback (write-ahead intents and step results)."""
        records = await self.store.rollbacks(incident=incident)
        if not records:
            return {}
        return {
            name: step["before"]
            for name, step in records[0].steps.items()
            if step.get("result") in ("intent", StepResult.DONE) and isinstance(step.get("before"), dict)
        }

    async def _record_step(self, job: Job, outcome: StepOutcome) -> None:
        if outcome.result in (StepResult.DONE, StepResult.NOOP, StepResult.DRY_RUN):
            self.metrics.action_latency.labels(outcome.step.value).observe(max(0.0, time.time() - job.received_at))
        self.metrics.actions.labels(outcome.step.value, outcome.result.value).inc()
        await job.durable.wait()  # never let a mutating step start before the intent is durable
        target = job.target.key

        def record(tx: Any) -> None:
            self.recorder.step(tx, job.incident, target, outcome)

        if outcome.step is Step.EVIDENCE or (outcome.step is Step.CHECK and outcome.result is StepResult.DONE):
            # A passed check (or the evidence) changed nothing and the intent is already durable: queue its record
            # (the store keeps submission order, so it still precedes the next step's) instead of putting a commit
            # between the webhook and canary traffic going off (or the scale-down).
            self.durable.queue(record)
            return
        await self.durable.write(record)


def _annotated_at(record: RollbackRecord | None) -> str | None:
    """The rejection time a resumed rollback already wrote on the Deployment (one time for one rejection)."""
    after = ((record.steps.get("annotate") or {}).get("after") or {}) if record is not None else {}
    value = (after.get("annotations") or {}).get(REJECTED_AT)
    return str(value) if value else None


def final_status(outcomes: list[StepOutcome]) -> str:
    results = {o.result for o in outcomes if o.step not in REPORTING_STEPS}
    if any(o.reason is FailureReason.STABLE_UNAVAILABLE for o in outcomes):
        return "held"  # nothing changed: stable cannot take the traffic; retried while the alerts fire
    if StepResult.REFUSED in results:
        return "refused"
    if StepResult.FAILED in results:
        return "failed"
    if StepResult.DRY_RUN in results:
        return "dry_run"
    if any(o.step is Step.DELEGATE and o.result is StepResult.DONE for o in outcomes):
        return "delegated"  # Flagger rolls it back when its rollback webhook asks the gate
    if any(o.reason is FailureReason.INCOMPLETE for o in outcomes):
        return "partial"  # everything that could be done is: some canary traffic could not be turned off
    return "done"


class _UnknownCluster:
    """A ClusterPort for a cluster the configuration no longer knows (a rollback resumed after the cluster was
    removed): every call fails permanently, so nothing is ever sent to another cluster by mistake."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Callable[..., Awaitable[Any]]:
        async def refuse(*args: Any, **kwargs: Any) -> Any:
            raise ClusterError(FailureReason.UNKNOWN_CLUSTER, f"cluster {self.name!r} is not configured")

        return refuse
