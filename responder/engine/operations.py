"""What operators do through the engine: pause and resume, replay (a dry-run preview, or through the normal path),
and restore (undo the rollbacks since the last restore, in the target's lane, refused if the canary changed).

Each is an input of the decision core when it changes its state (a pause, a restore) and is recorded in the same
transaction as its consequences, so a restart keeps it. The HTTP layer (:mod:`responder.http.admin`) calls these.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from responder.core.decide import Decision
from responder.core.model import AlertEvent, FailureReason, Step, StepResult, TargetRef, TrafficRef, iso
from responder.engine.executor import (
    ARGO_ROLLOUTS,
    Planned,
    RestorePoint,
    StepOutcome,
    TrafficPoint,
    execute_restore,
)
from responder.engine.lanes import Job, final_status
from responder.engine.recorder import step_data
from responder.store import RollbackRecord, StoreUnavailable

if TYPE_CHECKING:
    from responder.engine.engine import Engine

log = logging.getLogger("responder.engine")


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreResult:
    status: str  # restored | refused | failed | dry_run
    incident: str | None
    outcomes: list[StepOutcome]
    reason: FailureReason | None = None
    message: str = ""


class Operations:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- pause --

    async def set_paused(self, *, paused: bool, actor: str, reason: str) -> dict[str, Any]:
        """Flip the kill switch; durable (survives restarts) and audited. Pausing takes effect at once.

        The record is retried until it is durable, but the caller is not kept waiting for ever: past the bound
        it learns (StoreUnavailable, 503) that the flip is in effect but not yet recorded, while the retry goes on.
        """
        engine = self.engine
        now = engine.clock()
        state = {"paused": paused, "actor": actor, "reason": reason, "at": iso(now)}
        why = f"by {actor}: {reason}" if paused else None
        item = engine.next_input("pause", now, {"why": why})
        engine.core.set_paused(why)
        writing = asyncio.create_task(
            engine.durable.write(lambda tx: engine.recorder.pause(tx, item, state)), name="record-pause"
        )
        engine.durable.tasks.add(writing)
        writing.add_done_callback(engine.durable.tasks.discard)
        try:
            await asyncio.wait_for(asyncio.shield(writing), engine.options.admin_write_timeout_s)
        except TimeoutError:
            raise StoreUnavailable(
                f"{'pause' if paused else 'resume'} is in effect but not yet recorded (the database is not"
                " writable); it is retried in the background and lost if the responder restarts first"
            ) from None
        engine.metrics.paused.set(1 if paused else 0)
        log.warning("responder %s by %s: %s", "paused" if paused else "resumed", actor, reason or "(no reason given)")
        engine.poke()
        return state

    # -- replay --

    def preview(self, events: Sequence[AlertEvent], *, force: bool) -> list[Decision]:
        """What the core would decide for these events now, on a copy of its state: nothing changes."""
        core, now = copy.deepcopy(self.engine.core), self.engine.clock()
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
        engine = self.engine
        forced = [dataclasses.replace(event, forced=force) for event in events]
        stored = await engine.accept(raw, forced, meta, received_at=time.time(), source=f"replay:{actor}")
        async with asyncio.timeout(within):
            decisions = await engine.decided([e.event_id for e in stored])
        return stored, decisions

    def plan(self, target: TargetRef) -> list[str]:
        return [s.id for s in self.engine.lanes.options.plan(target)]

    # -- restore --

    async def restore(
        self, namespace: str, deployment: str, *, actor: str, dry_run: bool, cluster: str = ""
    ) -> RestoreResult:
        """Undo the rollbacks of a target since its last restore, in its lane; refused when the live objects
        changed since (beyond being half restored already)."""
        key = TargetRef(namespace, deployment, cluster=cluster).key
        records = await self.engine.store.rollbacks_since_restore(key)
        if records and records[0].target.delegate and records[0].target.delegate != ARGO_ROLLOUTS:
            if dry_run:
                message = (
                    f"would withdraw the {records[0].target.delegate} rollback decision for {key} (no cluster change)"
                )
                return RestoreResult(
                    status="dry_run", incident=records[0].incident, outcomes=[], reason=None, message=message
                )
            return await self._withdraw(records[0], [r.incident for r in records], actor=actor)
        point = restore_point(records)
        if not records or point is None:
            message = f"no completed rollback of {key} to restore"
            reason = FailureReason.NOTHING_TO_RESTORE
            return RestoreResult(status="refused", incident=None, outcomes=[], reason=reason, message=message)
        record = records[0]
        done: asyncio.Future[RestoreResult] = asyncio.get_running_loop().create_future()
        incidents = [r.incident for r in records]

        async def work() -> None:
            try:
                done.set_result(await self._restore(record, point, incidents, actor=actor, dry_run=dry_run))
            except Exception as exc:  # surfaced to the caller; the lane goes on
                done.set_exception(exc)

        self.engine.lanes.enqueue(record.key, work)
        return await done

    async def despite_stable(
        self, namespace: str, deployment: str, *, actor: str, cluster: str = ""
    ) -> RollbackRecord | None:
        """A human overrides the stable-health guard: run the target's HELD rollback again, acting although the
        stable Deployment has no ready replica. The record after it ran; None when no rollback of it is held."""
        engine = self.engine
        key = TargetRef(namespace, deployment, cluster=cluster).key
        held = next((r for r in await engine.store.rollbacks_since_restore(key) if r.status == "held"), None)
        if held is None:
            return None
        data = {"incident": held.incident, "override": "despite_stable"}
        await engine.durable.write(lambda tx: tx.append_audit("rollback.override", data, target=key, actor=actor))
        job = Job(held.incident, held.target, held.received_at, attempt=held.attempts + 1, ignore_stable=True)
        job.durable.set()  # its intent is on record already
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def work() -> None:
            try:
                await engine.lanes.run(job)
            finally:
                done.set_result(None)

        engine.lanes.enqueue(key, work)
        await done
        [record] = await engine.store.rollbacks(incident=held.incident)
        return record

    async def _withdraw(self, record: RollbackRecord, incidents: list[str], *, actor: str) -> RestoreResult:
        """Restore of a canary another controller rolled back: the gate stops answering "roll back" (the
        controller's own objects are its business; nothing is changed in the cluster)."""
        engine = self.engine
        item = engine.next_input("live", engine.clock(), {"target": record.target.as_dict()})
        engine.core.mark_live(record.target)
        await engine.durable.write(
            lambda tx: engine.recorder.restored(
                tx,
                incident=record.incident,
                incidents=incidents,
                target=record.key,
                status="restored",
                actor=actor,
                item=item,
            )
        )
        message = f"the {record.target.delegate} rollback gate no longer answers roll back for {record.key}"
        return RestoreResult(status="restored", incident=record.incident, outcomes=[], reason=None, message=message)

    async def _restore(
        self, record: RollbackRecord, point: RestorePoint, incidents: list[str], *, actor: str, dry_run: bool
    ) -> RestoreResult:
        engine, recorder, target = self.engine, self.engine.recorder, record.target
        incident, key = record.incident, record.key
        intent = {"dry_run": dry_run, "point": dataclasses.asdict(point)}
        await engine.durable.write(
            lambda tx: tx.append_audit("restore.intent", {"incident": incident, **intent}, target=key, actor=actor)
        )

        async def on_step(outcome: StepOutcome) -> None:
            engine.metrics.actions.labels(outcome.step.value, outcome.result.value).inc()
            data = step_data(incident, outcome)
            await engine.durable.write(lambda tx: recorder.restore_action(tx, incident, key, actor, data))

        async def on_intent(planned: Planned, before: dict[str, Any], wanted: dict[str, Any]) -> None:
            data = {"step": planned.id, "result": "intent", "before": before, "planned": wanted}
            await engine.durable.write(lambda tx: recorder.restore_action(tx, incident, key, actor, data), urgent=True)

        outcomes = await execute_restore(
            engine.lanes.cluster_for(target),
            target,
            point=point,
            safety=engine.options.safety,
            retry=engine.options.retry,
            dry_run=dry_run,
            on_step=on_step,
            on_intent=on_intent,
            guard=engine.authority.check,
            ready_timeout_s=engine.options.restore_ready_timeout_s,
        )
        status = {"done": "restored"}.get(final_status(outcomes), final_status(outcomes))
        stopped = next((o for o in outcomes if o.result in (StepResult.REFUSED, StepResult.FAILED)), None)
        item = engine.next_input("live", engine.clock(), {"target": target.as_dict()}) if status == "restored" else None
        if item is not None:
            engine.core.mark_live(target)
        await engine.durable.write(
            lambda tx: recorder.restored(
                tx, incident=incident, incidents=incidents, target=key, status=status, actor=actor, item=item
            )
        )
        if stopped is not None:
            log.warning("restore of %s by %s: %s: %s", key, actor, status, stopped.message)
        return RestoreResult(
            status=status,
            incident=incident,
            outcomes=outcomes,
            reason=stopped.reason if stopped else None,
            message=stopped.message if stopped else "",
        )


def restore_point(records: Sequence[RollbackRecord]) -> RestorePoint | None:
    """What the target looked like before the rollbacks since its last restore (newest first) changed anything;
    None when none of them got the canary scaled down.

    Several rollbacks may stand between two restores (a forced replay of a canary already rolled back, a new
    rollback after someone re-enabled the canary by hand): each object's value comes from the newest of them that
    changed it (the latest state someone chose), never from one that only found the rolled-back state. The newest
    gives the state as it is now (``after`` values, images)."""
    settled = [r for r in records if r.status in ("done", "partial", "failed")]
    if records and records[0].target.delegate == ARGO_ROLLOUTS:
        return _abort_point(settled)
    scale_id = Planned(Step.SCALE_ZERO).id
    if not settled or not any(_result(r, scale_id) in ("done", "noop") for r in settled):
        return None
    scale = _to_undo(settled, scale_id)
    check = next((r.steps.get(Step.CHECK.value) for r in settled if r.steps.get(Step.CHECK.value)), None) or {}
    traffic = []
    for ref in _traffic_refs(settled):
        step_id = Planned(Step.TRAFFIC_OFF, ref).id
        undo = _to_undo(settled, step_id)
        newest = next((r.steps[step_id] for r in settled if _result(r, step_id) in ("done", "noop")), None)
        if undo is not None and newest is not None:
            traffic.append(TrafficPoint(ref=ref, before=undo["before"], after=newest["after"]))
    return RestorePoint(
        replicas=int((scale or {}).get("before", {}).get("replicas", 0)),
        images=tuple((check.get("before") or {}).get("images", [])),
        traffic=tuple(traffic),
    )


def _abort_point(settled: Sequence[RollbackRecord]) -> RestorePoint | None:
    """An aborted Argo Rollout: undone by a retry, only where the responder's own abort landed (an abort found
    in place was someone else's, not the responder's to undo)."""
    abort_id = Planned(Step.ABORT).id
    mine = next((r.steps[abort_id] for r in settled if _result(r, abort_id) == "done"), None)
    if mine is None:
        return None
    return RestorePoint(replicas=0, images=(), aborted=dict(mine.get("before") or {}))


def _traffic_refs(records: Sequence[RollbackRecord]) -> list[TrafficRef]:
    found: dict[str, TrafficRef] = {}
    for record in records:
        for ref in record.target.traffic:
            found.setdefault(ref.key, ref)
    return list(found.values())


def _result(record: RollbackRecord, step_id: str) -> str | None:
    found = record.steps.get(step_id)
    return str(found.get("result")) if isinstance(found, dict) else None


def _to_undo(records: Sequence[RollbackRecord], step_id: str) -> dict[str, Any] | None:
    """The step's record from the newest rollback that changed it (DONE), else from the oldest that found it
    already in place (NOOP), else None (no rollback ran the step). ``records`` are newest first."""
    for record in records:
        if _result(record, step_id) == "done":
            found: dict[str, Any] = record.steps[step_id]
            return found
    for record in reversed(records):
        if _result(record, step_id) == "noop":
            kept: dict[str, Any] = record.steps[step_id]
            return kept
    return None
