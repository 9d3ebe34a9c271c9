"""The engine: turns durably accepted alert events into decisions, and decisions into rollbacks in their lanes.

Flow: the web layer calls :meth:`Engine.accept` (durable write, then enqueue; no Kubernetes call). One decide task
feeds events and timer ticks to the pure :class:`DecisionCore`. A batch's acting decisions (rollbacks, retries),
the "decided" mark of all its events, the core input that produced them and the rollback intents commit first,
through the store's urgent lane; the rest of the batch is recorded behind them while the next batch is decided.
Rollbacks run in their target's lane (:mod:`responder.engine.lanes`); recording is :mod:`responder.engine.recorder`;
pause, replay and restore are :mod:`responder.engine.operations`.

Restart equivalence: every input the core sees (a batch: a tick then its events; a pause flip; a restore; a
rollback's result) gets a sequence number when the core sees it and is recorded in the same transaction as its
consequences. On start the engine feeds the recorded inputs again, in order, and so reaches the state it had: a
restart changes no later decision. Then it decides what is still undecided and resumes every rollback whose intent
was recorded but whose result was not, with the before-values recorded so far.

Nothing accepted ends in silence: an event the core cannot decide is quarantined (ERROR, audited, notified), a
record the database refuses for its own data is replaced by a quarantine record, a crash of the decide loop is
logged, counted and recovered by rebuilding from the database, and a failed rollback is retried while its alerts
fire.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from responder.core.decide import Decision, DecisionCore
from responder.core.model import AlertEvent, Outcome, Step, StepResult
from responder.core.rules import acts_at_once
from responder.engine.durable import Durable, Write
from responder.engine.executor import REPORTING_STEPS, EvidenceOptions, Planned, RetryPolicy, SafetyRules, StepOutcome
from responder.engine.inbox import Inbox
from responder.engine.lanes import Job, LaneOptions, Lanes
from responder.engine.leadership import Authority, NotLeading
from responder.engine.operations import Operations
from responder.engine.recorder import DecidedBatch, Recorder, interruption, log_result
from responder.engine.repeats import Repeats
from responder.engine.replay import apply, decide_one, event_ids
from responder.health import Health, supervise
from responder.metrics import Metrics
from responder.ports import ClusterPort, NoticeHook
from responder.store import CoreInput, RollbackRecord, Store, StoreUnavailable, Tx, WriteRejected

log = logging.getLogger("responder.engine")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


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
    evidence: EvidenceOptions | None = None  # capture the canary pods' status, logs and Events before the scale-down
    restore_ready_timeout_s: float = 120.0  # restore: how long the restored pods may take to become ready
    admin_write_timeout_s: float = 10.0  # pause/resume: how long the caller waits for the record to be durable
    resume_within: timedelta = timedelta(minutes=10)  # a half-done rollback older than this is abandoned, not resumed
    inbox_poll_s: float = 2.0  # shared store: how often the leader looks for events other replicas accepted
    repeat_window: timedelta = timedelta(seconds=60)  # see responder.engine.repeats; 0 turns that path off


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
        authority: Authority | None = None,
    ) -> None:
        self.core = core
        self.store = store
        self.metrics = metrics
        self.options = options
        self.clock = clock
        self.health = health or Health(metrics)
        self.authority = authority or Authority()
        self.durable = Durable(store, metrics, self.authority)
        lane_options = LaneOptions(
            safety=options.safety,
            retry=options.retry,
            dry_run=options.dry_run,
            annotate=options.annotate,
            resume_within=options.resume_within,
            evidence=options.evidence,
        )
        self.recorder = Recorder(notice_hook=notice_hook, dry_run=options.dry_run, plan=lane_options.plan)
        self.lanes = Lanes(
            store=store,
            durable=self.durable,
            recorder=self.recorder,
            metrics=metrics,
            health=self.health,
            options=lane_options,
            cluster=cluster,
            clusters=clusters or {},
            finished=self._finished,
            clock=clock,
        )
        self.operations = Operations(self)
        self.repeats = Repeats(self, options.repeat_window)
        self.inbox = Inbox(
            store, poll_s=options.inbox_poll_s, urgent=lambda event: acts_at_once(self.core.settings.policies, event)
        )
        self._waiters: dict[int, asyncio.Future[list[Decision]]] = {}
        self._recording: asyncio.Task[None] | None = None  # the last batch's record, committing behind
        self._decider: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._seq = 0  # the last core input's sequence number
        self._started = False
        self._watch: asyncio.Task[None] | None = None

    # -- lifecycle --

    async def start(self) -> None:
        """Start deciding and acting: rebuild the core from the database, then take up what is pending.
        May be called again after :meth:`stop` (a replica that regains the leader lease)."""
        self._started = True  # webhooks accepted while this loads are queued (once: see _load)
        await self._load()
        self._decider = asyncio.create_task(
            supervise("engine-decide", self._decide_loop, health=self.health, recover=self._reload),
            name="engine-decide",
        )
        if self.store.shared:  # other replicas accept webhooks too: take up what they stored
            self.store.on_inbox = self.inbox.signal
            self._watch = asyncio.create_task(
                supervise("engine-inbox", self.inbox.watch, health=self.health), name="engine-inbox"
            )
            self.inbox.signal(0)  # whatever arrived while this loaded

    @property
    def running(self) -> bool:
        return self._started

    async def stop(self, *, grace_s: float = 0.0, why: str = "stopping") -> None:
        """Stop deciding at once; give the rollbacks under way up to ``grace_s`` to finish, then stop them and
        record each as interrupted (it stays pending: the next engine re-validates and resumes it)."""
        await self._stop_intake()
        if grace_s > 0:
            await self.lanes.wait_idle(grace_s)
        interrupted = list(self.lanes.running.values())
        await self._cancel_work()
        if interrupted and not self.authority.may_act():  # deposed: nothing may be recorded any more
            names = ", ".join(job.incident for job in interrupted)
            log.warning(
                "stopped %d rollback(s) under way (%s): %s; the next leader resumes them", len(interrupted), why, names
            )
            interrupted = []
        for job in interrupted:
            log.warning("rollback %s of %s interrupted (%s); it stays pending", job.incident, job.target.key, why)
            try:
                await asyncio.wait_for(self.durable.write(interruption(job.incident, job.target.key, why)), timeout=2.0)
            except (NotLeading, TimeoutError) as exc:
                log.warning("could not record the interruption of %s: %s", job.incident, exc)
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()

    async def _stop_intake(self) -> None:
        self._started = False
        if self._watch is not None:
            self.store.on_inbox = None
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        if self._decider is not None:
            self._decider.cancel()
            await asyncio.gather(self._decider, return_exceptions=True)
            self._decider = None

    async def _load(self) -> None:
        self.core = type(self.core)(self.core.settings)  # the same kind of core, empty: the inputs rebuild it
        self.inbox.reset()
        self._seq = await self.store.last_core_seq()
        await self._rebuild()
        # A notification accepted while this loads is queued by accept() and may also be read here: once only.
        for event, received_at in await self.store.undecided_events():
            self.inbox.add(event, received_at)
        for record in await self.store.rollbacks(status="pending"):
            self._resume(record)

    async def _reload(self) -> None:
        """After a crash of the decide loop: drop everything in memory and start again from the database."""
        await self._cancel_work()
        await self._load()

    async def _cancel_work(self) -> None:
        if self._recording is not None:
            self._recording.cancel()
            await asyncio.gather(self._recording, return_exceptions=True)
            self._recording = None
        await self.lanes.cancel()
        await self.durable.cancel()
        self._idle.set()

    async def _rebuild(self) -> None:
        # Everything older than the horizon has expired from the core's state by construction (dedupe, cooldown,
        # cap window, persist timers), except a failed rollback still retried while its alerts fire: go back to it.
        since = self.clock() - self.options.replay_horizon
        retrying = await self.store.oldest_retrying()
        if retrying is not None:
            since = min(since, retrying)
        inputs = await self.store.core_inputs(since)
        events = await self.store.events_by_ids([i for item in inputs if item.kind == "batch" for i in event_ids(item)])
        unrecorded: list[tuple[CoreInput, list[Decision]]] = []
        for item in inputs:
            decisions = apply(self.core, item, events)
            if not item.recorded:
                unrecorded.append((item, decisions))
        self.core.set_paused(await self.store.paused())
        self.core.expire(self.clock())
        self.metrics.paused.set(1 if self.core.paused else 0)
        for item, decisions in unrecorded:  # a crash came between a batch's urgent record and the rest of it
            rest = [d for d in decisions if not d.acts]
            await self._record(DecidedBatch(decisions=rest, now=item.at, pending_seq=item.seq))
        if inputs:
            log.info("rebuilt decision state from %d recorded inputs", len(inputs))

    def next_input(self, kind: str, at: datetime, data: dict[str, Any], *, recorded: bool = True) -> CoreInput:
        """Number an input of the core in the order the core sees it (call right before feeding it)."""
        self._seq += 1
        return CoreInput(self._seq, at, kind, data, recorded)

    def _resume(self, record: RollbackRecord) -> None:
        reporting = {Planned(step).id for step in REPORTING_STEPS}
        # Evidence is taken once: read again after the scale-down, it would find no pod and replace the capture.
        finished = {
            name
            for name, step in record.steps.items()
            if name in reporting and (step.get("result") in (StepResult.DONE, StepResult.NOOP) or name == Step.EVIDENCE)
        }
        log.warning("resuming rollback %s (reporting steps already done: %s)", record.incident, sorted(finished))
        job = Job(record.incident, record.target, record.received_at, frozenset(finished), attempt=record.attempts)
        job.resumed = record  # re-validated against the live objects and later records first
        job.durable.set()  # read back from the database
        self.lanes.dispatch(job)

    # -- intake (called by the web layer) --

    @property
    def backlog(self) -> int:
        return self.inbox.backlog

    def saturated(self) -> bool:
        return self.inbox.backlog >= self.options.max_backlog

    def _admits_critical(self, events: Sequence[AlertEvent]) -> bool:
        """Past ``max_backlog`` a notification with an alert that can roll back at once is still accepted (it is
        decided ahead of the backlog), within a tenth more room: Alertmanager's retry of a 503 would otherwise hold
        the rollback back by its backoff, seconds to minutes."""
        room = self.options.max_backlog + max(1, self.options.max_backlog // 10)
        policies = self.core.settings.policies
        return self.inbox.backlog + len(events) <= room and any(acts_at_once(policies, e) for e in events)

    async def accept(
        self,
        raw: bytes,
        events: Sequence[AlertEvent],
        meta: dict[str, Any],
        *,
        received_at: float,
        truncated: int = 0,
        source: str = "alertmanager",
        digest: bytes | None = None,
    ) -> list[AlertEvent]:
        """Durably store a notification, then queue its events; raises Saturated or StoreUnavailable. With the
        body's SHA-256 ``digest``, byte-for-byte repeats of it may then take :attr:`repeats`' path.

        A replica that is not leading (several replicas on the shared store) only stores it: the leader takes it up
        from the store. Without a shared store such a replica raises NotLeading (the webhook answers 503)."""
        leading = self.running and self.authority.may_act()
        if not leading and not self.store.shared:
            raise NotLeading("this replica is not the leader and has no shared store to hand the alert over")
        if leading and self.saturated() and not self._admits_critical(events):
            raise Saturated(f"engine backlog is full ({self.options.max_backlog} events)")
        try:
            stored = await self.store.ingest(
                raw, events, meta, received_at=received_at, truncated=truncated, source=source
            )
        except WriteRejected as exc:  # the payload model's bounds should make this impossible: say so loudly
            log.error("a notification could not be stored: %s", exc)
            self.metrics.poison_writes.inc()
            raise StoreUnavailable(f"the notification could not be stored: {exc}") from exc
        if leading:
            self.inbox.accepted(stored, received_at)
            if digest is not None:
                self.repeats.remember(digest, stored, truncated)
        return stored

    def poke(self) -> None:
        """Decide now: timers are due by the clock (tests with a fake clock call this after moving it). Counted as
        open work until the decide loop has taken it, so drain() waits for the tick."""
        self.inbox.poke()

    async def decided(self, event_ids: Sequence[int]) -> list[Decision]:
        """The decisions about these events, once recorded."""
        loop = asyncio.get_running_loop()
        waiters = [self._waiters.setdefault(i, loop.create_future()) for i in event_ids]
        results = await asyncio.gather(*waiters)
        return [d for decisions in results for d in decisions]

    async def drain(self, within: float = 10.0) -> None:
        """Wait until every queued event is decided and every lane is idle (tests and the demo)."""
        deadline = time.monotonic() + within
        while self.inbox.open or self.lanes.busy or not self._idle.is_set() or self._recording_busy():
            if time.monotonic() > deadline:
                raise TimeoutError("engine did not drain in time")
            await asyncio.sleep(0.01)

    def _recording_busy(self) -> bool:
        return self._recording is not None and not self._recording.done()

    # -- deciding --

    async def _decide_loop(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            timeout = None if deadline is None else min(3600.0, max(0.0, (deadline - self.clock()).total_seconds()))
            batch = await self.inbox.take(timeout)
            self._idle.clear()
            try:
                await self._decide(batch)
            except NotLeading as exc:
                # Deposed: the decisions in hand are not recorded, so they never happened; the next leader decides
                # these events again from the store. Wait here to be stopped (the elector steps down).
                log.warning("stopped deciding: %s", exc)
                await asyncio.Event().wait()
            finally:
                self._idle.set()

    async def _decide(self, batch: list[tuple[AlertEvent, float]]) -> None:
        now = self.clock()
        decisions = self.core.on_tick(now)
        for event, _ in batch:
            decisions.extend(decide_one(self.core, event, now))
        if not batch and not decisions:
            return  # a timer that changed nothing: nothing to record (replaying it would change nothing either)
        received = {event.event_id: received_at for event, received_at in batch}
        event_ids = [event.event_id for event, _ in batch]
        acting = [d for d in decisions if d.acts]
        rest = [d for d in decisions if not d.acts]
        item = self.next_input("batch", now, {"events": event_ids}, recorded=not (acting and rest))
        if acting:
            jobs = {d.incident or "": self._job_for(d, received) for d in acting}
            # Lanes start at once: their CHECK only reads, overlapping the commit of the intents; no step mutates
            # anything before ``job.durable`` says its intent is on disk.
            for job in jobs.values():
                self.lanes.dispatch(job)
            # The acting decisions commit first, in a small transaction of their own that jumps the store's queue,
            # so canary traffic goes off without waiting for the record of everything else in a storm's batch.
            started = {incident: job.started for incident, job in jobs.items()}
            first = DecidedBatch(decisions=acting, now=now, item=item, event_ids=event_ids, started=started)
            await self._record(first, urgent=True, events=[d.event for d in decisions])
            for job in jobs.values():
                job.durable.set()
        # The rest is recorded while the next batch is already being decided; one such record at a time keeps
        # the store's order and bounds what waits in memory. After an acting part, the input is on disk already
        # (marked "not yet recorded" when a rest follows); otherwise it goes with the rest.
        if self._recording is not None:
            await self._recording
        if acting:
            later = DecidedBatch(decisions=rest, now=now, pending_seq=item.seq if rest else 0)
        else:
            later = DecidedBatch(decisions=rest, now=now, item=item, event_ids=event_ids)
        self._recording = asyncio.create_task(self._record_later(batch, decisions, later))

    async def _record_later(
        self, batch: list[tuple[AlertEvent, float]], decisions: list[Decision], later: DecidedBatch
    ) -> None:
        if later.decisions or later.item is not None:
            await self._record(later, events=[d.event for d in later.decisions])
        for decision in decisions:
            self.metrics.events.labels(decision.outcome.value).inc()
        self.inbox.recorded(batch)
        for event, _ in batch:
            waiter = self._waiters.pop(event.event_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result([d for d in decisions if d.event.event_id == event.event_id])

    async def _record(self, batch: DecidedBatch, *, urgent: bool = False, events: Sequence[AlertEvent] = ()) -> None:
        """Write a decided batch; if the database refuses it for its data, a loud quarantine record instead."""

        def quarantine(error: str) -> Write:
            def write(tx: Tx) -> None:
                self.recorder.quarantine(
                    tx, events=events, now=batch.now, error=error, item=batch.item, seq=batch.pending_seq
                )

            return write

        await self.durable.write(lambda tx: self.recorder.batch(tx, batch), urgent=urgent, fallback=quarantine)

    def _job_for(self, decision: Decision, received: dict[int, float]) -> Job:
        assert decision.incident is not None and decision.target is not None
        received_at = received.get(decision.event.event_id, time.time())
        if decision.outcome is Outcome.RETRY:
            return Job(decision.incident, decision.target, received_at, attempt=decision.attempt)
        return Job(decision.incident, decision.target, received_at, prior={})

    # -- what became of a rollback --

    async def _finished(self, job: Job, status: str, changed: bool, outcomes: list[StepOutcome]) -> None:
        """Tell the core what became of the rollback and record it (and that input) in one transaction."""
        now = self.clock()
        data = {"incident": job.incident, "target": job.target.as_dict(), "status": status, "changed": changed}
        item = self.next_input("result", now, data)
        reason = job.abandoned
        self.core.on_result(incident=job.incident, target=job.target, status=status, changed=changed, now=now)
        retrying = self.core.failing(job.target) == job.incident
        log_result(job.started, status, outcomes, retrying=retrying)
        started = job.started
        await self.durable.write(
            lambda tx: self.recorder.result(
                tx,
                started,
                item,
                status=status,
                changed=changed,
                retrying=retrying,
                reason=reason,
                rejected_at=job.rejected_at,
            )
        )
        self.metrics.rollbacks.labels(status).inc()
        self.poke()  # a failed rollback may now have a retry timer
