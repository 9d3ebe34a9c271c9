"""The engine: turns durably accepted alert events into decisions and carries rollbacks out, per target in order.

Flow: the web layer calls :meth:`Engine.accept` (durable write, then enqueue; no Kubernetes call). One decide task
feeds events and timer ticks to the pure :class:`DecisionCore`. A batch's acting decisions (rollbacks, retries),
the "decided" mark of all its events, the core input that produced them and the rollback intents commit first,
through the store's urgent lane; the rest of the batch is recorded behind them while the next batch is decided.
Rollbacks go to a lane per target: two canaries roll back in parallel, one target never sees concurrent actions,
and no step mutates anything before its intent is durable. Before each write a step records what it read and
what it will set (write-ahead), and each step's outcome is recorded as it completes.

Restart equivalence: every input the core sees (a batch: a tick then its events; a pause flip; a restore; a
rollback's result) gets a sequence number when the core sees it and is recorded in the same transaction as its
consequences. On start the engine feeds the recorded inputs again, in order, and so reaches the state it had:
a restart changes no later decision. Then it decides what is still undecided and resumes every rollback whose
intent was recorded but whose result was not, with the before-values recorded so far.

Nothing accepted ends in silence: an event the core cannot decide is quarantined (ERROR, audited, notified), a
record the database refuses for its own data is replaced by a quarantine record, a crash of the decide loop is
logged, counted and recovered by rebuilding from the database, and a failed rollback is retried while its alerts
fire.
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
    changed_anything,
    execute_restore,
    execute_rollback,
    plan_steps,
)
from responder.core.decide import Decision, DecisionCore
from responder.core.model import AlertEvent, FailureReason, Outcome, Step, StepResult, TargetRef
from responder.health import Health, supervise
from responder.metrics import Metrics
from responder.ports import ClusterError, ClusterPort
from responder.store import CoreInput, RollbackRecord, Store, StoreUnavailable, WriteRejected, iso

log = logging.getLogger("responder.engine")

Clock = Callable[[], datetime]
Write = Callable[[sqlite3.Connection], Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """Something people must hear about, handed to the notice hook inside the transaction that records it,
    so a notification is durable exactly when the fact it reports is (the outbox relies on this).

    kinds: ``rollback`` (final status in data["status"]: done, failed, refused, dry_run), ``retry`` (a failed
    rollback is tried again), ``retry_stopped`` (its alerts resolved), ``held`` (global cap), ``refused`` (an
    acting alert with no allowed target), ``notify`` (notify-only policy), ``resolved`` (an alert resolved;
    data["fingerprint"]), ``error`` (an event that could not be processed), and the admin kinds ``paused_hold``,
    ``restored``.
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
    restore_ready_timeout_s: float = 120.0  # restore: how long the restored pods may take to become ready
    admin_write_timeout_s: float = 10.0  # pause/resume: how long the caller waits for the record to be durable


@dataclass(slots=True)
class _Job:
    incident: str
    target: TargetRef
    received_at: float
    skip: frozenset[Step] = frozenset()
    prior: dict[Step, dict[str, Any]] | None = None  # None: read the recorded before-values first (resume, retry)
    attempt: int = 0  # 0 for the first run, n for the n-th retry
    durable: asyncio.Event = field(default_factory=asyncio.Event)  # set once the intent is committed


_TICK = None  # queued by poke(): decide now (the clock moved)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Later:
    """What of a decided batch is recorded behind its acting part (or all of it, when nothing acts)."""

    batch: list[tuple[AlertEvent, float]]
    decisions: list[Decision]
    rest: list[Decision]
    event_ids: list[int]  # to mark decided here (empty when the acting part marked them all)
    item: CoreInput | None  # the batch's core input, when the acting part did not write it
    pending_seq: int  # the input to mark recorded (written by the acting part with a rest to follow), or 0
    now: datetime


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
        health: Health | None = None,
    ) -> None:
        self.core = core
        self.notice_hook = notice_hook
        self.store = store
        self.cluster = cluster  # the home cluster: single-cluster targets (cluster ""), readiness, the Lease
        self.clusters: Mapping[str, ClusterPort] = clusters or {}  # multi-cluster: one connection per cluster
        self.metrics = metrics
        self.options = options
        self.clock = clock
        self.health = health or Health(metrics)
        self._queue: asyncio.Queue[tuple[AlertEvent, float] | None] = asyncio.Queue()
        self._lanes: dict[str, asyncio.Queue[Callable[[], Awaitable[None]]]] = {}
        self._waiters: dict[int, asyncio.Future[list[Decision]]] = {}
        self._recording: asyncio.Task[None] | None = None  # the last batch's record, committing behind
        self._tasks: set[asyncio.Task[None]] = set()
        self._decider: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._seq = 0  # the last core input's sequence number
        self._open = 0  # events queued or being decided whose decisions are not recorded yet (drain waits on it)
        self._queued: set[int] = set()  # ids of the events in the queue: an event is never queued twice

    # -- lifecycle --

    async def start(self) -> None:
        """Start deciding and acting: rebuild the core from the database, then take up what is pending.
        May be called again after :meth:`stop` (a replica that regains the leader lease)."""
        await self._load()
        self._decider = asyncio.create_task(
            supervise("engine-decide", self._decide_loop, health=self.health, recover=self._reload),
            name="engine-decide",
        )

    async def _load(self) -> None:
        self.core = type(self.core)(self.core.settings)  # the same kind of core, empty: the inputs rebuild it
        self._queue, self._queued, self._open = asyncio.Queue(), set(), 0
        self._seq = await self.store.last_core_seq()
        await self._rebuild()
        # A notification accepted while this loads is queued by accept() and may also be read here: once only.
        for event, received_at in await self.store.undecided_events():
            self._enqueue_event(event, received_at)
        for record in await self.store.rollbacks(status="pending"):
            self._resume(record)

    async def _reload(self) -> None:
        """After a crash of the decide loop: drop everything in memory and start again from the database."""
        await self._cancel_work()
        await self._load()

    async def stop(self) -> None:
        if self._decider is not None:
            self._decider.cancel()
            await asyncio.gather(self._decider, return_exceptions=True)
            self._decider = None
        await self._cancel_work()
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()

    async def _cancel_work(self) -> None:
        tasks = [t for t in [self._recording, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._recording = None
        self._tasks.clear()
        self._lanes.clear()
        self._idle.set()

    async def _rebuild(self) -> None:
        # Everything older than the horizon has expired from the core's state by construction (dedupe, cooldown,
        # cap window, persist timers), except a failed rollback still retried while its alerts fire: go back to it.
        since = self.clock() - self.options.replay_horizon
        retrying = await self.store.oldest_retrying()
        if retrying is not None:
            since = min(since, retrying)
        inputs = await self.store.core_inputs(since)
        events = await self.store.events_by_ids([i for item in inputs if item.kind == "batch" for i in _ids(item)])
        unrecorded: list[tuple[CoreInput, list[Decision]]] = []
        for item in inputs:
            decisions = self._apply(item, events)
            if not item.recorded:
                unrecorded.append((item, decisions))
        self.core.set_paused(await self.store.paused())
        self.core.expire(self.clock())
        self.metrics.paused.set(1 if self.core.paused else 0)
        for item, decisions in unrecorded:  # a crash came between a batch's urgent record and the rest of it
            await self._record_missed(item, [d for d in decisions if not d.acts])
        if inputs:
            log.info("rebuilt decision state from %d recorded inputs", len(inputs))

    async def _record_missed(self, item: CoreInput, rest: list[Decision]) -> None:
        await self._write_until_done(
            lambda conn: self._record_rest(conn, item.seq, rest, item.at),
            fallback=_quarantine_writer(self, [d.event for d in rest], item.at, seq=item.seq),
        )

    def _apply(self, item: CoreInput, events: Mapping[int, AlertEvent]) -> list[Decision]:
        """Feed one recorded input to the core again, exactly as it was fed the first time."""
        if item.kind == "batch":
            decisions = self.core.on_tick(item.at)
            for event_id in _ids(item):
                event = events.get(event_id)
                if event is not None:
                    decisions.extend(self._decide_one(event, item.at, replaying=True))
            return decisions
        if item.kind == "pause":
            self.core.set_paused(item.data.get("why"))
        elif item.kind == "live":
            self.core.mark_live(TargetRef.from_dict(item.data["target"]))
        elif item.kind == "result":
            self.core.on_result(
                incident=str(item.data["incident"]),
                target=TargetRef.from_dict(item.data["target"]),
                status=str(item.data["status"]),
                changed=bool(item.data["changed"]),
                now=item.at,
            )
        return []

    def _next_input(self, kind: str, at: datetime, data: dict[str, Any], *, recorded: bool = True) -> CoreInput:
        self._seq += 1
        return CoreInput(self._seq, at, kind, data, recorded)

    def _resume(self, record: RollbackRecord) -> None:
        finished = {
            Step(name)
            for name, step in record.steps.items()
            if name in (Step.EVENT, Step.ANNOTATE) and step.get("result") in (StepResult.DONE, StepResult.NOOP)
        }
        target = _record_target(record)
        log.warning("resuming rollback %s (reporting steps already done: %s)", record.incident, sorted(finished))
        job = _Job(record.incident, target, record.received_at, frozenset(finished), attempt=record.attempts)
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
        try:
            stored = await self.store.ingest(
                raw, events, meta, received_at=received_at, truncated=truncated, source=source
            )
        except WriteRejected as exc:  # the payload model's bounds should make this impossible: say so loudly
            log.error("a notification could not be stored: %s", exc)
            self.metrics.poison_writes.inc()
            raise StoreUnavailable(f"the notification could not be stored: {exc}") from exc
        for event in stored:
            self._enqueue_event(event, received_at)
        return stored

    def _enqueue_event(self, event: AlertEvent, received_at: float) -> None:
        if event.event_id in self._queued:
            return
        self._queued.add(event.event_id)
        self._open += 1
        self._queue.put_nowait((event, received_at))

    def poke(self) -> None:
        """Decide now: timers are due by the clock (tests with a fake clock call this after moving it). Counted as
        open work until the decide loop has taken it, so drain() waits for the tick."""
        self._open += 1
        self._queue.put_nowait(_TICK)

    async def drain(self, within: float = 10.0) -> None:
        """Wait until every queued event is decided and every lane is idle (tests and the demo)."""
        deadline = time.monotonic() + within
        while self._open or self._lanes or not self._idle.is_set() or self._recording_busy():
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
        timeout = None if deadline is None else min(3600.0, max(0.0, (deadline - self.clock()).total_seconds()))
        found: list[tuple[AlertEvent, float] | None] = []
        try:
            found.append(await asyncio.wait_for(self._queue.get(), timeout))
        except TimeoutError:
            return []
        while not self._queue.empty() and len(found) < 256:
            found.append(self._queue.get_nowait())
        batch = [item for item in found if item is not None]
        self._open -= len(found) - len(batch)  # the pokes taken
        self._queued.difference_update(event.event_id for event, _ in batch)
        return batch

    def _decide_one(self, event: AlertEvent, now: datetime, *, replaying: bool = False) -> list[Decision]:
        """The core's decisions for one event; an event it cannot decide is quarantined (ERROR), never retried.
        Replaying gives the same answer, since the core is deterministic."""
        try:
            return self.core.on_event(event, now)
        except Exception as exc:
            if not replaying:
                log.error("could not decide event %d (%s); quarantined", event.event_id, event.alertname, exc_info=exc)
            reason = f"could not be processed: {type(exc).__name__}: {exc}"[:500]
            return [Decision(outcome=Outcome.ERROR, event=event, reason=reason)]

    async def _decide(self, batch: list[tuple[AlertEvent, float]]) -> None:
        now = self.clock()
        decisions = self.core.on_tick(now)
        for event, _ in batch:
            decisions.extend(self._decide_one(event, now))
        if not batch and not decisions:
            return  # a timer that changed nothing: nothing to record (replaying it would change nothing either)
        received = {event.event_id: received_at for event, received_at in batch}
        event_ids = [event.event_id for event, _ in batch]
        acting = [d for d in decisions if d.acts]
        rest = [d for d in decisions if not d.acts]
        item = self._next_input("batch", now, {"events": event_ids}, recorded=not (acting and rest))
        if acting:
            jobs = [self._job_for(d, received) for d in acting]
            # Lanes start at once: their CHECK only reads, overlapping the commit of the intents; no step mutates
            # anything before ``job.durable`` says its intent is on disk.
            for job in jobs:
                self._dispatch(job)
            # The acting decisions commit first, in a small transaction of their own that jumps the store's queue,
            # so canary traffic goes off without waiting for the record of everything else in a storm's batch.
            await self._write_until_done(
                lambda conn: self._record_acting(conn, item, event_ids, acting, jobs, now),
                urgent=True,
                fallback=_quarantine_writer(self, [d.event for d in decisions], now, item=item),
            )
            for job in jobs:
                job.durable.set()
        # The rest is recorded while the next batch is already being decided; one such record at a time keeps
        # the store's order and bounds what waits in memory. After an acting part, the input is on disk already
        # (marked "not yet recorded" when a rest follows); otherwise it goes with the rest.
        if self._recording is not None:
            await self._recording
        later = _Later(
            batch=batch,
            decisions=decisions,
            rest=rest,
            event_ids=[] if acting else event_ids,
            item=None if acting else item,
            pending_seq=item.seq if acting and rest else 0,
            now=now,
        )
        self._recording = asyncio.create_task(self._record_later(later))

    async def _record_later(self, later: _Later) -> None:
        if later.rest or later.item is not None:

            def record(conn: sqlite3.Connection) -> None:
                if later.item is not None:
                    self.store.append_core_input(conn, later.item)
                self.store.mark_decided(conn, [i for i in later.event_ids if i], later.now)
                self._record_rest(conn, later.pending_seq, later.rest, later.now)

            events = [d.event for d in later.rest]
            await self._write_until_done(
                record,
                fallback=_quarantine_writer(
                    self, events, later.now, item=later.item, seq=later.pending_seq, event_ids=later.event_ids
                ),
            )
        for decision in later.decisions:
            self.metrics.events.labels(decision.outcome.value).inc()
        self._open -= len(later.batch)
        self._wake_waiters(later.batch, later.decisions)

    def _wake_waiters(self, batch: list[tuple[AlertEvent, float]], decisions: list[Decision]) -> None:
        for event, _ in batch:
            waiter = self._waiters.pop(event.event_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result([d for d in decisions if d.event.event_id == event.event_id])

    async def _write_until_done(
        self, fn: Write, *, urgent: bool = False, fallback: Callable[[str], Write] | None = None
    ) -> None:
        """Decisions already changed the core's state, so their record must not be dropped: retry until the
        database takes it (meanwhile webhooks are answered 503 and /readyz fails, so nothing new piles up).
        A record the database refuses for its own data is replaced once by ``fallback(error)`` (a quarantine
        record that says what was lost); without one, the refusal is raised to the caller."""
        delay = 0.05
        while True:
            try:
                await self.store.write(fn, urgent=urgent)
                return
            except StoreUnavailable as exc:
                log.error("cannot write to the database (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except WriteRejected as exc:
                self.metrics.poison_writes.inc()
                log.error("the database refused a record for its data (%s)", exc)
                if fallback is None:
                    raise
                fn, fallback = fallback(str(exc)), None

    def _job_for(self, decision: Decision, received: dict[int, float]) -> _Job:
        assert decision.incident is not None and decision.target is not None
        received_at = received.get(decision.event.event_id, time.time())
        if decision.outcome is Outcome.RETRY:
            return _Job(decision.incident, decision.target, received_at, attempt=decision.attempt)
        return _Job(decision.incident, decision.target, received_at, prior={})

    # -- recording (write functions: they run on the store's thread inside one transaction) --

    def _record_acting(
        self,
        conn: sqlite3.Connection,
        item: CoreInput,
        event_ids: list[int],
        decisions: list[Decision],
        jobs: list[_Job],
        now: datetime,
    ) -> None:
        self.store.append_core_input(conn, item)
        self.store.mark_decided(conn, [i for i in event_ids if i], now)
        jobs_by_incident = {job.incident: job for job in jobs}
        for decision in decisions:
            job = jobs_by_incident[cast(str, decision.incident)]
            if decision.outcome is Outcome.ROLLBACK:
                self.store.insert_rollback(conn, self._intent(job, decision, now))
            self._record_decision(conn, decision)
            if decision.outcome is Outcome.ROLLBACK:
                self._audit_intent(conn, job, decision)
            else:
                self._record_retry(conn, job, decision)

    def _record_rest(self, conn: sqlite3.Connection, seq: int, decisions: list[Decision], now: datetime) -> None:
        if seq:
            self.store.mark_input_recorded(conn, seq)
        for decision in decisions:
            self._record_decision(conn, decision)
            if decision.outcome is Outcome.COALESCED and decision.incident:
                self.store.update_rollback(conn, decision.incident, cite=_cite(decision.event))
            if decision.outcome is Outcome.CANCELLED and decision.incident:
                self.store.update_rollback(conn, decision.incident, spec={"retrying": False})

    def _record_decision(self, conn: sqlite3.Connection, decision: Decision) -> None:
        target = decision.target.key if decision.target else None
        data = _decision_data(decision)
        self.store.append_audit(conn, "decision", data, target=target)
        _log_decision(decision)
        kind = _notice_kind(decision)
        if kind is not None:
            self.notice(conn, Notice(kind=kind, incident=decision.incident, target=target, data=data))

    def _record_retry(self, conn: sqlite3.Connection, job: _Job, decision: Decision) -> None:
        self.store.update_rollback(
            conn,
            job.incident,
            status="pending",
            cite=_cite(decision.event),
            spec={"retrying": True, "attempts": job.attempt},
        )
        data = {
            "incident": job.incident,
            "attempt": job.attempt,
            "reason": decision.reason,
            "alert": decision.event.alertname,
        }
        self.store.append_audit(conn, "rollback.retry", data, target=job.target.key)

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
        """Serial executor for one target; ends (and is recreated on demand) when its queue is empty. One piece
        of work that raises is reported and the lane goes on with the next."""
        try:
            while not lane.empty():
                try:
                    await lane.get_nowait()()
                except Exception as exc:
                    self.health.crashed("lane", exc)
        finally:
            self._lanes.pop(key, None)

    async def _execute(self, job: _Job) -> None:
        async def on_step(outcome: StepOutcome) -> None:
            await self._record_step(job, outcome)

        async def on_intent(step: Step, before: dict[str, Any], planned: dict[str, Any]) -> None:
            await self._record_intent(job, step, before, planned)

        outcomes: list[StepOutcome] = []
        try:
            prior = job.prior if job.prior is not None else await self._prior(job.incident)
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
                on_intent=on_intent,
                prior=prior,
            )
            status, changed = _final_status(outcomes), changed_anything(outcomes) or self.options.dry_run
        except Exception as exc:  # a bug, not a cluster failure: never leave the rollback silent
            self.health.crashed("rollback", exc)
            status, changed = "failed", True  # unknown: assume it changed something (the cap stays counted)
            error = type(exc).__name__
            await self._write_until_done(
                lambda conn: self.store.append_audit(
                    conn,
                    "rollback.error",
                    {"incident": job.incident, "error": error},
                    target=job.target.key,
                )
            )
        await self._finish(job, status, changed, outcomes)

    async def _finish(self, job: _Job, status: str, changed: bool, outcomes: list[StepOutcome]) -> None:
        """Tell the core what became of the rollback and record it (and that input) in one transaction."""
        now = self.clock()
        item = self._next_input(
            "result",
            now,
            {"incident": job.incident, "target": job.target.as_dict(), "status": status, "changed": changed},
        )
        self.core.on_result(incident=job.incident, target=job.target, status=status, changed=changed, now=now)
        retrying = self.core.failing(job.target) == job.incident
        if status == "failed":
            stopped = next((o for o in outcomes if o.result is StepResult.FAILED), None)
            log.error(
                "rollback %s of %s FAILED%s; %s",
                job.incident,
                job.target.key,
                f" at {stopped.step.value}: {stopped.message}" if stopped else "",
                "retried while its alerts fire" if retrying else "manual action required",
            )
        elif status == "refused":
            log.warning("rollback %s of %s refused by the live safety check", job.incident, job.target.key)
        await self._write_until_done(lambda conn: self._record_result(conn, job, item, status, changed, retrying))
        self.metrics.rollbacks.labels(status).inc()
        self.poke()  # a failed rollback may now have a retry timer

    async def _prior(self, incident: str) -> dict[Step, dict[str, Any]]:
        """The before-values recorded by earlier runs of this rollback (write-ahead intents and step results)."""
        records = await self.store.rollbacks(incident=incident)
        if not records:
            return {}
        found: dict[Step, dict[str, Any]] = {}
        for name, step in records[0].steps.items():
            if step.get("result") in ("intent", StepResult.DONE) and isinstance(step.get("before"), dict):
                found[Step(name)] = step["before"]
        return found

    async def _record_intent(self, job: _Job, step: Step, before: dict[str, Any], planned: dict[str, Any]) -> None:
        """Write-ahead: what a step read and what it will set is durable before the write is sent."""
        await job.durable.wait()
        data = {"incident": job.incident, "step": step.value, "result": "intent", "before": before, "planned": planned}

        def record(conn: sqlite3.Connection) -> None:
            self.store.update_rollback(conn, job.incident, step=(step.value, data))
            self.store.append_audit(conn, "action.intent", data, target=job.target.key)

        await self._write_until_done(record, urgent=True)

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

    def _pending_write(self, fn: Write) -> None:
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

    def _record_result(
        self, conn: sqlite3.Connection, job: _Job, item: CoreInput, status: str, changed: bool, retrying: bool
    ) -> None:
        self.store.append_core_input(conn, item)
        self.store.update_rollback(conn, job.incident, status=status, spec={"retrying": retrying})
        data = {"incident": job.incident, "status": status, "changed": changed, "attempt": job.attempt}
        if status == "failed":
            data["retrying"] = retrying
        self.store.append_audit(conn, "rollback.result", data, target=job.target.key)
        self.notice(conn, Notice(kind="rollback", incident=job.incident, target=job.target.key, data=data))

    # -- admin operations (replay, restore, pause) --

    async def set_paused(self, *, paused: bool, actor: str, reason: str) -> dict[str, Any]:
        """Flip the kill switch; durable (survives restarts) and audited. Pausing takes effect at once."""
        now = self.clock()
        state = {"paused": paused, "actor": actor, "reason": reason, "at": iso(now)}
        why = f"by {actor}: {reason}" if paused else None
        item = self._next_input("pause", now, {"why": why})
        self.core.set_paused(why)

        def record(conn: sqlite3.Connection) -> None:
            self.store.append_core_input(conn, item)
            self.store.record_pause(conn, state)

        # The flip is in effect at once; its record is retried until it is durable, but the caller is not kept
        # waiting for ever: past the bound it learns that the flip is not yet durable (503) while it goes on.
        writing = asyncio.create_task(self._write_until_done(record), name="record-pause")
        self._tasks.add(writing)
        writing.add_done_callback(self._tasks.discard)
        try:
            await asyncio.wait_for(asyncio.shield(writing), self.options.admin_write_timeout_s)
        except TimeoutError:
            raise StoreUnavailable(
                f"{'pause' if paused else 'resume'} is in effect but not yet recorded (the database is not"
                " writable); it is retried in the background and lost if the responder restarts first"
            ) from None
        self.metrics.paused.set(1 if paused else 0)
        log.warning("responder %s by %s: %s", "paused" if paused else "resumed", actor, reason or "(no reason given)")
        self.poke()
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
        records = await self.store.rollbacks_since_restore(key)
        point = restore_point(records)
        record = records[0] if records else None
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

        incidents = [r.incident for r in records]

        async def work() -> None:
            try:
                done.set_result(await self._restore(record, target, point, incidents, actor=actor, dry_run=dry_run))
            except Exception as exc:  # surfaced to the caller; the lane goes on
                done.set_exception(exc)

        self._enqueue(target.key, work)
        return await done

    async def _restore(
        self,
        record: RollbackRecord,
        target: TargetRef,
        point: RestorePoint,
        incidents: list[str],
        *,
        actor: str,
        dry_run: bool,
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

        async def on_intent(step: Step, before: dict[str, Any], planned: dict[str, Any]) -> None:
            data = {"incident": incident, "step": step.value, "result": "intent", "before": before, "planned": planned}
            await self._write_until_done(
                lambda conn: self.store.append_audit(conn, "restore.action", data, target=target.key, actor=actor),
                urgent=True,
            )

        outcomes = await execute_restore(
            self.cluster_for(target),
            target,
            point=point,
            safety=self.options.safety,
            retry=self.options.retry,
            dry_run=dry_run,
            on_step=on_step,
            on_intent=on_intent,
            ready_timeout_s=self.options.restore_ready_timeout_s,
        )
        status = {"done": "restored"}.get(_final_status(outcomes), _final_status(outcomes))
        stopped = next((o for o in outcomes if o.result in (StepResult.REFUSED, StepResult.FAILED)), None)
        now = self.clock()
        item = self._next_input("live", now, {"target": target.as_dict()}) if status == "restored" else None
        if item is not None:
            self.core.mark_live(target)
        await self._write_until_done(
            lambda conn: self._record_restore(conn, incident, incidents, target, status, actor, item)
        )
        if stopped is not None:
            log.warning("restore of %s by %s: %s: %s", target.key, actor, status, stopped.message)
        return RestoreResult(
            status=status,
            incident=incident,
            outcomes=outcomes,
            reason=stopped.reason if stopped else None,
            message=stopped.message if stopped else "",
        )

    def _record_restore(
        self,
        conn: sqlite3.Connection,
        incident: str,
        incidents: list[str],
        target: TargetRef,
        status: str,
        actor: str,
        item: CoreInput | None,
    ) -> None:
        if item is not None:
            self.store.append_core_input(conn, item)
            for each in incidents:  # every rollback since the last restore is undone together
                self.store.update_rollback(conn, each, status="restored", spec={"retrying": False})
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


def restore_point(records: Sequence[RollbackRecord]) -> RestorePoint | None:
    """What the target looked like before the rollbacks since its last restore (newest first) changed anything;
    None when none of them got the canary scaled down.

    Several rollbacks may stand between two restores (a forced replay of a canary already rolled back, a new
    rollback after someone re-enabled the canary by hand): each step's value comes from the newest of them that
    changed it (the latest state someone chose), never from one that only found the rolled-back state. The newest
    gives the state as it is now (``after`` values, images)."""
    settled = [r for r in records if r.status in ("done", "failed")]
    if not settled or not any(_step_result(r, Step.SCALE_ZERO) in ("done", "noop") for r in settled):
        return None
    traffic = _change_to_undo(settled, Step.TRAFFIC_OFF)
    scale = _change_to_undo(settled, Step.SCALE_ZERO)
    route = _change_to_undo(settled, Step.ROUTE_OFF)
    newest_route = next((r.steps[Step.ROUTE_OFF.value] for r in settled if _changed_or_kept(r, Step.ROUTE_OFF)), None)
    check = next((r.steps.get(Step.CHECK.value) for r in settled if r.steps.get(Step.CHECK.value)), None) or {}
    return RestorePoint(
        replicas=int((scale or {}).get("before", {}).get("replicas", 0)),
        annotation=traffic["before"].get("annotations", {}).get(CANARY_ANNOTATION) if traffic else None,
        images=tuple((check.get("before") or {}).get("images", [])),
        traffic_step=traffic is not None,
        route_before=route["before"].get("rules") if route else None,
        route_after=newest_route["after"].get("rules") if route and newest_route else None,
    )


def _step_result(record: RollbackRecord, step: Step) -> str | None:
    found = record.steps.get(step.value)
    return str(found.get("result")) if isinstance(found, dict) else None


def _changed_or_kept(record: RollbackRecord, step: Step) -> bool:
    return _step_result(record, step) in ("done", "noop")


def _change_to_undo(records: Sequence[RollbackRecord], step: Step) -> dict[str, Any] | None:
    """The step's record from the newest rollback that changed it (DONE), else from the oldest that found it
    already safe (NOOP), else None (no rollback ran the step). ``records`` are newest first."""
    for record in records:
        if _step_result(record, step) == "done":
            found: dict[str, Any] = record.steps[step.value]
            return found
    for record in reversed(records):
        if _step_result(record, step) == "noop":
            kept: dict[str, Any] = record.steps[step.value]
            return kept
    return None


def _record_target(record: RollbackRecord) -> TargetRef:
    return TargetRef(
        record.namespace,
        record.deployment,
        record.ingress,
        httproute=record.httproute,
        canary_backend=record.canary_backend,
        cluster=record.cluster,
    )


def _ids(item: CoreInput) -> list[int]:
    return [int(i) for i in item.data.get("events", [])]


def _quarantine_writer(
    engine: Engine,
    events: Sequence[AlertEvent],
    now: datetime,
    *,
    item: CoreInput | None = None,
    seq: int = 0,
    event_ids: Sequence[int] = (),
) -> Callable[[str], Write]:
    """The record to write instead when the database refused a batch's record for its data: the core input
    (so a restart still reaches the same state), the events marked decided, and one loud ``quarantine`` entry and
    notice naming what could not be recorded."""

    def writer(error: str) -> Write:
        def write(conn: sqlite3.Connection) -> None:
            if item is not None:
                engine.store.append_core_input(conn, dataclasses.replace(item, recorded=True))
            if seq:
                engine.store.mark_input_recorded(conn, seq)
            ids = sorted({*(i for i in event_ids if i), *(e.event_id for e in events if e.event_id)})
            engine.store.mark_decided(conn, ids, now)
            data = {"event_ids": ids, "error": error[:500], "alerts": sorted({e.alertname for e in events})[:20]}
            engine.store.append_audit(conn, "quarantine", data)
            engine.notice(conn, Notice(kind="error", incident=None, target=None, data={**data, "reason": error[:500]}))

        return write

    return writer


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
    Outcome.ERROR: "error",
    Outcome.RETRY: "retry",
}


def _notice_kind(decision: Decision) -> str | None:
    if decision.outcome is Outcome.CANCELLED and decision.incident:
        return "retry_stopped"
    kind = _NOTICE_KINDS.get(decision.outcome)
    if kind == "held" and PAUSED_PREFIX in decision.reason:
        return "paused_hold"
    return kind


def _log_decision(decision: Decision) -> None:
    """Decisions people must hear about are also loud on stderr, not only audit JSON on stdout."""
    where = decision.target.key if decision.target else "(no target)"
    what = f"{decision.event.alertname or '?'} on {where}: {decision.outcome.value.upper()} - {decision.reason}"
    if decision.outcome is Outcome.ERROR:
        log.error("alert %s", what)
    elif decision.outcome in (Outcome.HELD, Outcome.REFUSED, Outcome.ROLLBACK, Outcome.RETRY):
        log.warning("alert %s", what)


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
    data = {
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
    if decision.attempt:
        data["attempt"] = decision.attempt
    return data


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
