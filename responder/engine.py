"""The engine: turns durably accepted alert events into decisions and carries rollbacks out, per target in order.

Flow: the web layer calls :meth:`Engine.accept` (durable write, then enqueue; no Kubernetes call). One decide task
feeds events and timer ticks to the pure :class:`DecisionCore`. A batch's rollback decisions, their events'
"decided" mark and the rollback intents commit first, through the store's urgent lane; the rest of the batch is
recorded behind them while the next batch is decided. Rollbacks go to a lane per target: two canaries roll back
in parallel, one target never sees concurrent actions, and no step mutates anything before its intent is durable.
Each step's outcome is recorded durably as it completes.

Crash safety: an event is either undecided (it is decided again after a restart) or decided together with the
intent of the rollback it caused. On start the engine rebuilds the core by feeding it the already-decided events
again (decisions discarded), decides what is still undecided, and resumes every rollback whose intent was recorded
but whose result was not; its steps are idempotent and those already done are skipped.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from responder.actions import (
    CANARY_ANNOTATION,
    RejectionMark,
    RestorePoint,
    RetryPolicy,
    SafetyRules,
    StepOutcome,
    execute_restore,
    execute_rollback,
    plan_steps,
)
from responder.core.decide import Decision, DecisionCore
from responder.core.model import AlertEvent, FailureReason, Outcome, Step, StepResult, TargetRef
from responder.metrics import Metrics
from responder.ports import ClusterError, ClusterPort
from responder.store import RollbackRecord, Store, StoreUnavailable, iso

log = logging.getLogger("responder.engine")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """Something people must hear about, handed to the notice hook inside the transaction that records it,
    so a notification is durable exactly when the fact it reports is (the outbox relies on this).

    kinds: ``rollback`` (final status in data["status"]: done, failed, refused, dry_run), ``held`` (global cap),
    ``refused`` (an acting alert with no allowed target), ``notify`` (notify-only policy), ``resolved`` (an alert
    resolved; data["fingerprint"]), and the admin kinds ``paused_hold``, ``restored``.
    """

    kind: str
    incident: str | None
    target: str | None
    data: dict[str, Any]


NoticeHook = Callable[[sqlite3.Connection, Notice], None]


class Saturated(Exception):
    """The engine's backlog is full: answer 503 so Alertmanager retries later."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    safety: SafetyRules
    retry: RetryPolicy
    dry_run: bool = False
    max_backlog: int = 20_000
    replay_horizon: timedelta = timedelta(hours=6)
    annotate: bool = False  # GitOps awareness: annotate the rolled-back Deployment with what was rejected


@dataclass(slots=True)
class _Job:
    incident: str
    target: TargetRef
    received_at: float
    skip: frozenset[Step] = frozenset()
    durable: asyncio.Event = field(default_factory=asyncio.Event)  # set once the intent is committed


class Engine:
    def __init__(
        self,
        *,
        core: DecisionCore,
        store: Store,
        cluster: ClusterPort,
        metrics: Metrics,
        options: EngineOptions,
        clock: Clock = utc_now,
        notice_hook: NoticeHook | None = None,
        clusters: Mapping[str, ClusterPort] | None = None,
    ) -> None:
        self.core = core
        self.notice_hook = notice_hook
        self.store = store
        self.cluster = cluster  # the home cluster: single-cluster targets (cluster ""), readiness, the Lease
        self.clusters: Mapping[str, ClusterPort] = clusters or {}  # multi-cluster: one connection per cluster
        self.metrics = metrics
        self.options = options
        self.clock = clock
        self._queue: asyncio.Queue[tuple[AlertEvent, float]] = asyncio.Queue()
        self._lanes: dict[str, asyncio.Queue[Callable[[], Awaitable[None]]]] = {}
        self._waiters: dict[int, asyncio.Future[list[Decision]]] = {}
        self._recording: asyncio.Task[None] | None = None  # the last batch's record, committing behind
        self._tasks: set[asyncio.Task[None]] = set()
        self._decider: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle --

    async def start(self) -> None:
        """Start deciding and acting: rebuild the core from the database, then take up what is pending.
        May be called again after :meth:`stop` (a replica that regains the leader lease)."""
        self.core = DecisionCore(self.core.settings)
        self._queue = asyncio.Queue()
        await self._rebuild()
        for event, received_at in await self.store.undecided_events():
            self._queue.put_nowait((event, received_at))
        for record in await self.store.rollbacks(status="pending"):
            self._resume(record)
        self._decider = asyncio.create_task(self._decide_loop(), name="engine-decide")

    async def stop(self) -> None:
        tasks = [t for t in [self._decider, self._recording, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._decider = None
        self._recording = None
        self._tasks.clear()
        self._lanes.clear()
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()
        self._idle.set()

    async def _rebuild(self) -> None:
        since = self.clock() - self.options.replay_horizon
        replayed = await self.store.decided_events(since)
        pauses = await self.store.pause_history()  # [(when, why or None)], oldest first
        for event, decided_at in replayed:
            while pauses and pauses[0][0] <= decided_at:
                self.core.set_paused(pauses.pop(0)[1])
            self.core.on_tick(decided_at)
            self.core.on_event(event, decided_at)
        self.core.set_paused(await self.store.paused())
        self.metrics.paused.set(1 if self.core.paused else 0)
        if replayed:
            log.info("rebuilt decision state from %d decided events", len(replayed))

    def _resume(self, record: RollbackRecord) -> None:
        finished = {
            Step(name)
            for name, step in record.steps.items()
            if step.get("result") in (StepResult.DONE, StepResult.NOOP) and name != Step.CHECK
        }
        target = _record_target(record)
        log.warning("resuming rollback %s (steps already done: %s)", record.incident, sorted(finished))
        job = _Job(record.incident, target, record.received_at, frozenset(finished))
        job.durable.set()  # read back from the database
        self._dispatch(job)

    # -- intake (called by the web layer) --

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def saturated(self) -> bool:
        return self._queue.qsize() >= self.options.max_backlog

    async def accept(
        self,
        raw: bytes,
        events: Sequence[AlertEvent],
        meta: dict[str, Any],
        *,
        received_at: float,
        truncated: int = 0,
        source: str = "alertmanager",
    ) -> list[AlertEvent]:
        """Durably store a notification, then queue its events; raises Saturated or StoreUnavailable."""
        if self.saturated():
            raise Saturated(f"engine backlog is full ({self.options.max_backlog} events)")
        stored = await self.store.ingest(raw, events, meta, received_at=received_at, truncated=truncated, source=source)
        for event in stored:
            self._queue.put_nowait((event, received_at))
        return stored

    async def drain(self, within: float = 10.0) -> None:
        """Wait until every queued event is decided and every lane is idle (tests and the demo)."""
        deadline = time.monotonic() + within
        while self._queue.qsize() or self._lanes or not self._idle.is_set() or self._recording_busy():
            if time.monotonic() > deadline:
                raise TimeoutError("engine did not drain in time")
            await asyncio.sleep(0.01)

    def _recording_busy(self) -> bool:
        return self._recording is not None and not self._recording.done()

    # -- deciding --

    async def _decide_loop(self) -> None:
        while True:
            batch = await self._next_batch()
            self._idle.clear()
            try:
                await self._decide(batch)
            finally:
                self._idle.set()

    async def _next_batch(self) -> list[tuple[AlertEvent, float]]:
        deadline = self.core.next_deadline()
        timeout = None if deadline is None else max(0.0, (deadline - self.clock()).total_seconds())
        batch: list[tuple[AlertEvent, float]] = []
        try:
            batch.append(await asyncio.wait_for(self._queue.get(), timeout))
        except TimeoutError:
            return batch
        while not self._queue.empty() and len(batch) < 256:
            batch.append(self._queue.get_nowait())
        return batch

    async def _decide(self, batch: list[tuple[AlertEvent, float]]) -> None:
        now = self.clock()
        decisions = self.core.on_tick(now)
        received = {event.event_id: received_at for event, received_at in batch}
        for event, _ in batch:
            decisions.extend(self.core.on_event(event, now))
        jobs = [self._job_for(d, received) for d in decisions if d.outcome is Outcome.ROLLBACK]
        # Lanes start at once: their CHECK only reads, overlapping the commit of the intents; no step mutates
        # anything before ``job.durable`` says its intent (and the before-state it will hold) is on disk.
        for job in jobs:
            self._dispatch(job)
        rest, event_ids = decisions, [event.event_id for event, _ in batch]
        if jobs:
            # The rollbacks commit first, in a small transaction of their own that jumps the store's queue, so
            # canary traffic goes off without waiting for the record of everything else in a storm's batch.
            urgent = [d for d in decisions if d.outcome is Outcome.ROLLBACK]
            urgent_ids = {d.event.event_id for d in urgent}
            await self._write_until_done(
                lambda conn: self._record(conn, list(urgent_ids), urgent, jobs, now), urgent=True
            )
            for job in jobs:
                job.durable.set()
            rest = [d for d in decisions if d.outcome is not Outcome.ROLLBACK]
            event_ids = [i for i in event_ids if i not in urgent_ids]
        # The rest is recorded while the next batch is already being decided; one such record at a time keeps
        # the store's order and bounds what waits in memory.
        if self._recording is not None:
            await self._recording
        self._recording = asyncio.create_task(self._record_rest(batch, decisions, rest, event_ids, now))

    async def _record_rest(
        self,
        batch: list[tuple[AlertEvent, float]],
        decisions: list[Decision],
        rest: list[Decision],
        event_ids: list[int],
        now: datetime,
    ) -> None:
        await self._write_until_done(lambda conn: self._record(conn, event_ids, rest, [], now))
        for decision in decisions:
            self.metrics.events.labels(decision.outcome.value).inc()
        self._wake_waiters(batch, decisions)

    def _wake_waiters(self, batch: list[tuple[AlertEvent, float]], decisions: list[Decision]) -> None:
        for event, _ in batch:
            waiter = self._waiters.pop(event.event_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result([d for d in decisions if d.event.event_id == event.event_id])

    async def _write_until_done(self, fn: Callable[[sqlite3.Connection], object], *, urgent: bool = False) -> None:
        """Decisions already changed the core's state, so their record must not be dropped: retry until the
        database takes it (meanwhile webhooks are answered 503 and /readyz fails, so nothing new piles up)."""
        delay = 0.05
        while True:
            try:
                await self.store.write(fn, urgent=urgent)
                return
            except StoreUnavailable as exc:
                log.error("cannot write to the database (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _job_for(self, decision: Decision, received: dict[int, float]) -> _Job:
        assert decision.incident is not None and decision.target is not None
        received_at = received.get(decision.event.event_id, time.time())
        return _Job(decision.incident, decision.target, received_at)

    def _record(
        self, conn: sqlite3.Connection, event_ids: list[int], decisions: list[Decision], jobs: list[_Job], now: datetime
    ) -> None:
        self.store.mark_decided(conn, [i for i in event_ids if i], now)
        jobs_by_incident = {job.incident: job for job in jobs}
        for decision in decisions:  # rollback rows first: a later decision in this batch may join one
            if decision.incident in jobs_by_incident and decision.outcome is Outcome.ROLLBACK:
                self.store.insert_rollback(conn, self._intent(jobs_by_incident[decision.incident], decision, now))
        for decision in decisions:
            target = decision.target.key if decision.target else None
            self.store.append_audit(conn, "decision", _decision_data(decision), target=target)
            if decision.outcome is Outcome.COALESCED and decision.incident:
                self.store.update_rollback(conn, decision.incident, cite=_cite(decision.event))
            if decision.outcome is Outcome.ROLLBACK and decision.incident in jobs_by_incident:
                self._audit_intent(conn, jobs_by_incident[decision.incident], decision)
            kind = _NOTICE_KINDS.get(decision.outcome)
            if kind == "held" and decision.reason.startswith(PAUSED_PREFIX):
                kind = "paused_hold"
            if kind is not None:
                self.notice(
                    conn, Notice(kind=kind, incident=decision.incident, target=target, data=_decision_data(decision))
                )

    def notice(self, conn: sqlite3.Connection, notice: Notice) -> None:
        """Hand a notice to the hook (the Slack outbox) inside the caller's transaction."""
        if self.notice_hook is not None:
            self.notice_hook(conn, notice)

    def _intent(self, job: _Job, decision: Decision, now: datetime) -> RollbackRecord:
        return RollbackRecord(
            incident=job.incident,
            target=job.target.key,
            namespace=job.target.namespace,
            deployment=job.target.deployment,
            ingress=job.target.ingress,
            cluster=job.target.cluster,
            httproute=job.target.httproute,
            canary_backend=job.target.canary_backend,
            created_at=iso(now),
            received_at=job.received_at,
            status="pending",
            dry_run=self.options.dry_run,
            steps={},
            cites=[_cite(decision.event)],
        )

    def _audit_intent(self, conn: sqlite3.Connection, job: _Job, decision: Decision) -> None:
        plan = plan_steps(job.target, annotate=self.options.annotate)
        self.store.append_audit(
            conn,
            "rollback.intent",
            {
                "incident": job.incident,
                "plan": [s.value for s in plan],
                "dry_run": self.options.dry_run,
                "reason": decision.reason,
                "alert": decision.event.alertname,
            },
            target=job.target.key,
        )

    # -- acting --

    def cluster_for(self, target: TargetRef) -> ClusterPort:
        """The connection to the target's cluster; one that refuses every call when the cluster is unknown
        (the executor's safety check refuses such a target first: this is the second line)."""
        if not target.cluster:
            return self.cluster
        return self.clusters.get(target.cluster) or cast(ClusterPort, _UnknownCluster(target.cluster))

    def _dispatch(self, job: _Job) -> None:
        self._enqueue(job.target.key, lambda: self._execute(job))

    def _enqueue(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` in the target's lane, after whatever the lane already holds (rollbacks, restores)."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = asyncio.Queue()
            task = asyncio.create_task(self._lane(key, lane), name=f"lane-{key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        lane.put_nowait(work)

    async def _lane(self, key: str, lane: asyncio.Queue[Callable[[], Awaitable[None]]]) -> None:
        """Serial executor for one target; ends (and is recreated on demand) when its queue is empty."""
        try:
            while not lane.empty():
                await lane.get_nowait()()
        finally:
            self._lanes.pop(key, None)

    async def _execute(self, job: _Job) -> None:
        async def on_step(outcome: StepOutcome) -> None:
            await self._record_step(job, outcome)

        try:
            mark = RejectionMark(incident=job.incident, at=iso(self.clock())) if self.options.annotate else None
            outcomes = await execute_rollback(
                self.cluster_for(job.target),
                job.target,
                safety=self.options.safety,
                retry=self.options.retry,
                dry_run=self.options.dry_run,
                skip=job.skip,
                mark=mark,
                on_step=on_step,
            )
            status = _final_status(outcomes)
        except Exception as exc:  # a bug, not a cluster failure: never leave the rollback silent
            log.exception("rollback %s crashed", job.incident)
            status = "failed"
            await self.store.audit(
                "rollback.error", {"incident": job.incident, "error": type(exc).__name__}, target=job.target.key
            )
        await self._write_until_done(lambda conn: self._record_result(conn, job, status))
        self.metrics.rollbacks.labels(status).inc()

    async def _record_step(self, job: _Job, outcome: StepOutcome) -> None:
        if outcome.result in (StepResult.DONE, StepResult.NOOP, StepResult.DRY_RUN):
            self.metrics.action_latency.labels(outcome.step.value).observe(max(0.0, time.time() - job.received_at))
        self.metrics.actions.labels(outcome.step.value, outcome.result.value).inc()
        data = _step_data(job.incident, outcome)
        await job.durable.wait()  # never let a mutating step start before the intent is durable
        if outcome.step is Step.CHECK and outcome.result is StepResult.DONE:
            # A passed check changed nothing and the intent is already durable: queue its record (the store
            # keeps submission order, so it still precedes the traffic step's) instead of putting a commit
            # between the webhook and canary traffic going off.
            self._pending_write(lambda conn: self._persist_step(conn, job, data))
            return
        await self._write_until_done(lambda conn: self._persist_step(conn, job, data))

    def _pending_write(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """Queue a record now (keeping its place in the store's order) without waiting for it; if that commit
        fails, keep retrying it in the background rather than leave a gap in the audit trail."""

        def done(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is not None:
                task = asyncio.create_task(self._write_until_done(fn))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        self.store.submit(fn).add_done_callback(done)

    def _persist_step(self, conn: sqlite3.Connection, job: _Job, data: dict[str, Any]) -> None:
        self.store.update_rollback(conn, job.incident, step=(data["step"], data))
        self.store.append_audit(conn, "action", data, target=job.target.key)

    def _record_result(self, conn: sqlite3.Connection, job: _Job, status: str) -> None:
        self.store.update_rollback(conn, job.incident, status=status)
        self.store.append_audit(
            conn, "rollback.result", {"incident": job.incident, "status": status}, target=job.target.key
        )
        self.notice(
            conn, Notice(kind="rollback", incident=job.incident, target=job.target.key, data={"status": status})
        )

    # -- admin operations (replay, restore, pause) --

    async def set_paused(self, *, paused: bool, actor: str, reason: str) -> dict[str, Any]:
        """Flip the kill switch; durable (survives restarts) and audited. Pausing takes effect at once."""
        state = {"paused": paused, "actor": actor, "reason": reason, "at": iso(self.clock())}
        if paused:
            self.core.set_paused(f"by {actor}: {reason}")
        await self._write_until_done(lambda conn: self.store.record_pause(conn, state))
        if not paused:
            self.core.set_paused(None)
        self.metrics.paused.set(1 if paused else 0)
        return state

    def preview(self, events: Sequence[AlertEvent], *, force: bool) -> list[Decision]:
        """What the core would decide for these events now, on a copy of its state: nothing changes."""
        core, now = copy.deepcopy(self.core), self.clock()
        decisions: list[Decision] = []
        for event in events:
            decisions.extend(core.on_event(dataclasses.replace(event, forced=force), now))
        return decisions

    async def replay(
        self,
        raw: bytes,
        events: Sequence[AlertEvent],
        meta: dict[str, Any],
        *,
        force: bool,
        actor: str,
        within: float = 10.0,
    ) -> tuple[list[AlertEvent], list[Decision]]:
        """Feed stored or supplied alerts through the normal path (durable, audited, decided, executed) and
        return their decisions once made."""
        forced = [dataclasses.replace(event, forced=force) for event in events]
        stored = await self.accept(raw, forced, meta, received_at=time.time(), source=f"replay:{actor}")
        loop = asyncio.get_running_loop()
        waiters = [self._waiters.setdefault(e.event_id, loop.create_future()) for e in stored]
        async with asyncio.timeout(within):
            results = await asyncio.gather(*waiters)
        return stored, [d for decisions in results for d in decisions]

    def plan(self, target: TargetRef) -> list[str]:
        return [s.value for s in plan_steps(target, annotate=self.options.annotate)]

    async def restore(
        self, namespace: str, deployment: str, *, actor: str, dry_run: bool, cluster: str = ""
    ) -> RestoreResult:
        """Undo the last rollback of a target in its lane; refused when the live objects changed since."""
        key = TargetRef(namespace, deployment, cluster=cluster).key
        record = await self.store.latest_rollback(key)
        point = restore_point(record) if record is not None else None
        if record is None or point is None:
            return RestoreResult(
                status="refused",
                incident=None,
                outcomes=[],
                reason=FailureReason.NOTHING_TO_RESTORE,
                message=f"no completed rollback of {key} to restore",
            )
        target = _record_target(record)
        done: asyncio.Future[RestoreResult] = asyncio.get_running_loop().create_future()

        async def work() -> None:
            try:
                done.set_result(await self._restore(record, target, point, actor=actor, dry_run=dry_run))
            except Exception as exc:  # surfaced to the caller; the lane goes on
                done.set_exception(exc)

        self._enqueue(target.key, work)
        return await done

    async def _restore(
        self, record: RollbackRecord, target: TargetRef, point: RestorePoint, *, actor: str, dry_run: bool
    ) -> RestoreResult:
        incident = record.incident
        await self._write_until_done(
            lambda conn: self.store.append_audit(
                conn,
                "restore.intent",
                {"incident": incident, "dry_run": dry_run, "point": dataclasses.asdict(point)},
                target=target.key,
                actor=actor,
            )
        )

        async def on_step(outcome: StepOutcome) -> None:
            data = _step_data(incident, outcome)
            self.metrics.actions.labels(outcome.step.value, outcome.result.value).inc()
            await self._write_until_done(
                lambda conn: self.store.append_audit(conn, "restore.action", data, target=target.key, actor=actor)
            )

        outcomes = await execute_restore(
            self.cluster_for(target),
            target,
            point=point,
            safety=self.options.safety,
            retry=self.options.retry,
            dry_run=dry_run,
            on_step=on_step,
        )
        status = {"done": "restored"}.get(_final_status(outcomes), _final_status(outcomes))
        stopped = next((o for o in outcomes if o.result in (StepResult.REFUSED, StepResult.FAILED)), None)
        if status == "restored":
            self.core.mark_live(target)
        await self._write_until_done(lambda conn: self._record_restore(conn, incident, target, status, actor))
        return RestoreResult(
            status=status,
            incident=incident,
            outcomes=outcomes,
            reason=stopped.reason if stopped else None,
            message=stopped.message if stopped else "",
        )

    def _record_restore(
        self, conn: sqlite3.Connection, incident: str, target: TargetRef, status: str, actor: str
    ) -> None:
        if status == "restored":
            self.store.update_rollback(conn, incident, status="restored")
        data = {"incident": incident, "status": status, "actor": actor}
        self.store.append_audit(conn, "restore.result", data, target=target.key, actor=actor)
        self.notice(
            conn,
            Notice(
                kind="restored" if status == "restored" else "restore_" + status,
                incident=incident,
                target=target.key,
                data=data,
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreResult:
    status: str  # restored | refused | failed | dry_run
    incident: str | None
    outcomes: list[StepOutcome]
    reason: FailureReason | None = None
    message: str = ""


def restore_point(record: RollbackRecord) -> RestorePoint | None:
    """What the rollback recorded before changing anything; None when it never scaled the canary down."""
    scale = record.steps.get(Step.SCALE_ZERO.value)
    if record.status not in ("done", "failed") or not scale or scale.get("result") not in ("done", "noop"):
        return None
    traffic = record.steps.get(Step.TRAFFIC_OFF.value)
    check = record.steps.get(Step.CHECK.value, {})
    annotation = traffic["before"].get("annotations", {}).get(CANARY_ANNOTATION) if traffic else None
    route = record.steps.get(Step.ROUTE_OFF.value)
    route_done = bool(route and route.get("result") in ("done", "noop"))
    return RestorePoint(
        replicas=int(scale["before"].get("replicas", 0)),
        annotation=annotation,
        images=tuple(check.get("before", {}).get("images", [])),
        traffic_step=bool(traffic and traffic.get("result") in ("done", "noop")),
        route_before=route["before"].get("rules") if route and route_done else None,
        route_after=route["after"].get("rules") if route and route_done else None,
    )


def _record_target(record: RollbackRecord) -> TargetRef:
    return TargetRef(
        record.namespace,
        record.deployment,
        record.ingress,
        httproute=record.httproute,
        canary_backend=record.canary_backend,
        cluster=record.cluster,
    )


class _UnknownCluster:
    """A ClusterPort for a cluster the configuration no longer knows (a rollback resumed after the cluster was
    removed): every call fails permanently, so nothing is ever sent to another cluster by mistake."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Callable[..., Awaitable[Any]]:
        async def refuse(*args: Any, **kwargs: Any) -> Any:
            raise ClusterError(FailureReason.UNKNOWN_CLUSTER, f"cluster {self.name!r} is not configured")

        return refuse


PAUSED_PREFIX = "responder paused"
_NOTICE_KINDS = {
    Outcome.HELD: "held",
    Outcome.REFUSED: "refused",
    Outcome.NOTIFY: "notify",
    Outcome.RESOLVED: "resolved",
}


def _final_status(outcomes: list[StepOutcome]) -> str:
    results = {o.result for o in outcomes if o.step not in (Step.EVENT, Step.ANNOTATE)}
    if StepResult.REFUSED in results:
        return "refused"
    if StepResult.FAILED in results:
        return "failed"
    if StepResult.DRY_RUN in results:
        return "dry_run"
    return "done"


def _cite(event: AlertEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "alertname": event.alertname,
        "fingerprint": event.fingerprint,
        "starts_at": iso(event.starts_at),
        "summary": event.annotations.get("summary", ""),
        "description": event.annotations.get("description", ""),
    }


def _decision_data(decision: Decision) -> dict[str, Any]:
    return {
        "event_id": decision.event.event_id,
        "fingerprint": decision.event.fingerprint,
        "alertname": decision.event.alertname,
        "status": decision.event.status.value,
        "outcome": decision.outcome.value,
        "reason": decision.reason,
        "policy": decision.policy,
        "incident": decision.incident,
        "deadline": iso(decision.deadline) if decision.deadline else None,
    }


def _step_data(incident: str, outcome: StepOutcome) -> dict[str, Any]:
    return {
        "incident": incident,
        "step": outcome.step.value,
        "result": outcome.result.value,
        "before": outcome.before,
        "after": outcome.after,
        "attempts": outcome.attempts,
        "duration_ms": round(outcome.duration_s * 1000, 3),
        "reason": outcome.reason.value if outcome.reason else None,
        "message": outcome.message,
    }
