"""Recording: everything the engine decides and does, written as values through the store port.

Each function runs inside one transaction (a :class:`responder.store.Tx`) on the store's thread: a decided batch
(:class:`DecidedBatch`) is one call, as is a step's write-ahead intent, its outcome, a rollback's result, a pause,
a restore. Notices for people go to the notice hooks (outbox, GitOps relay) in the same transaction, so a
notification is durable exactly when the fact it reports is. Decisions people must hear about are also logged
loudly on stderr, not only audited on stdout.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from responder.core.decide import Decision
from responder.core.model import AlertEvent, FailureReason, Outcome, Step, StepResult, TargetRef, iso
from responder.engine.executor import Planned, StepOutcome
from responder.ports import Notice, NoticeHook
from responder.store import CoreInput, RollbackRecord, Tx

log = logging.getLogger("responder.engine")

PAUSED_PREFIX = "responder paused"
_NOTICE_KINDS = {
    Outcome.HELD: "held",
    Outcome.REFUSED: "refused",
    Outcome.NOTIFY: "notify",
    Outcome.RESOLVED: "resolved",
    Outcome.ERROR: "error",
    Outcome.RETRY: "retry",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    """A rollback (or a retry of one) that a decision starts: what its record needs."""

    incident: str
    target: TargetRef
    received_at: float
    attempt: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DecidedBatch:
    """What one decided batch (or one part of it) writes, as one value.

    ``item``: the batch's core input, when this part carries it; ``pending_seq``: the input this part completes
    (its acting part was written first, marked not yet recorded); ``event_ids``: events to mark decided."""

    decisions: Sequence[Decision]
    now: datetime
    item: CoreInput | None = None
    pending_seq: int = 0
    event_ids: Sequence[int] = ()
    started: Mapping[str, Started] = field(default_factory=dict)  # incident -> what it starts


class Recorder:
    def __init__(
        self, *, notice_hook: NoticeHook | None, dry_run: bool, plan: Callable[[TargetRef], list[Planned]]
    ) -> None:
        self.notice_hook = notice_hook
        self.dry_run = dry_run
        self.plan = plan  # the steps a rollback of a target runs (for the intent's audit entry)

    def notice(self, tx: Tx, notice: Notice) -> None:
        if self.notice_hook is not None:
            self.notice_hook(tx, notice)

    # -- decisions --

    def batch(self, tx: Tx, batch: DecidedBatch) -> None:
        if batch.item is not None:
            tx.append_core_input(batch.item)
        if batch.pending_seq:
            tx.mark_input_recorded(batch.pending_seq)
        tx.mark_decided([i for i in batch.event_ids if i], batch.now)
        for decision in batch.decisions:
            started = batch.started.get(decision.incident or "")
            if decision.outcome is Outcome.ROLLBACK and started is not None:
                tx.insert_rollback(self._intent(started, decision, batch.now))
            self._decision(tx, decision)
            if started is not None and decision.outcome is Outcome.ROLLBACK:
                self._audit_intent(tx, started, decision)
            elif started is not None and decision.outcome is Outcome.RETRY:
                self._retry(tx, started, decision)
            elif decision.outcome is Outcome.COALESCED and decision.incident:
                tx.update_rollback(decision.incident, cite=cite(decision.event))
            elif decision.outcome is Outcome.CANCELLED and decision.incident:
                tx.update_rollback(decision.incident, spec={"retrying": False})

    def _decision(self, tx: Tx, decision: Decision) -> None:
        target = decision.target.key if decision.target else None
        data = decision_data(decision)
        tx.append_audit("decision", data, target=target)
        _log_decision(decision)
        kind = _notice_kind(decision)
        if kind is not None:
            self.notice(tx, Notice(kind=kind, incident=decision.incident, target=target, data=data))

    def _intent(self, started: Started, decision: Decision, now: datetime) -> RollbackRecord:
        return RollbackRecord(
            incident=started.incident,
            target=started.target,
            created_at=iso(now),
            received_at=started.received_at,
            status="pending",
            dry_run=self.dry_run,
            steps={},
            cites=[cite(decision.event)],
        )

    def _audit_intent(self, tx: Tx, started: Started, decision: Decision) -> None:
        plan = self.plan(started.target)
        data = {
            "incident": started.incident,
            "plan": [s.id for s in plan],
            "dry_run": self.dry_run,
            "reason": decision.reason,
            "alert": decision.event.alertname,
        }
        tx.append_audit("rollback.intent", data, target=started.target.key)

    def _retry(self, tx: Tx, started: Started, decision: Decision) -> None:
        spec = {"retrying": True, "attempts": started.attempt}
        tx.update_rollback(started.incident, status="pending", cite=cite(decision.event), spec=spec)
        data = {
            "incident": started.incident,
            "attempt": started.attempt,
            "reason": decision.reason,
            "alert": decision.event.alertname,
        }
        tx.append_audit("rollback.retry", data, target=started.target.key)

    def quarantine(
        self, tx: Tx, *, events: Sequence[AlertEvent], now: datetime, error: str, item: CoreInput | None, seq: int
    ) -> None:
        """Instead of a batch's record the database refused for its data: the core input (so a restart still
        reaches the same state), the events marked decided, and one loud ``quarantine`` entry and notice."""
        if item is not None:
            tx.append_core_input(CoreInput(item.seq, item.at, item.kind, item.data, recorded=True))
        if seq:
            tx.mark_input_recorded(seq)
        ids = sorted({e.event_id for e in events if e.event_id})
        tx.mark_decided(ids, now)
        data = {"event_ids": ids, "error": error[:500], "alerts": sorted({e.alertname for e in events})[:20]}
        tx.append_audit("quarantine", data)
        log.error("events %s could not be recorded and were quarantined: %s", ids, error[:200])
        self.notice(tx, Notice(kind="error", incident=None, target=None, data={**data, "reason": error[:500]}))

    # -- acting --

    def intent(
        self, tx: Tx, incident: str, target: str, step: Planned, before: dict[str, Any], planned: dict[str, Any]
    ) -> None:
        """Write-ahead: what a step read and what it will set, durable before the write is sent."""
        data = {"incident": incident, "step": step.id, "result": "intent", "before": before, "planned": planned}
        tx.update_rollback(incident, step=(step.id, data))
        tx.append_audit("action.intent", data, target=target)

    def step(self, tx: Tx, incident: str, target: str, outcome: StepOutcome) -> None:
        data = step_data(incident, outcome)
        tx.update_rollback(incident, step=(outcome.id, data))
        tx.append_audit("action", audited(data), target=target)

    def result(
        self,
        tx: Tx,
        started: Started,
        item: CoreInput,
        *,
        status: str,
        changed: bool,
        retrying: bool,
        reason: str | None = None,
        rejected_at: str | None = None,
    ) -> None:
        tx.append_core_input(item)
        tx.update_rollback(started.incident, status=status, spec={"retrying": retrying})
        data: dict[str, Any] = {
            "incident": started.incident,
            "status": status,
            "changed": changed,
            "attempt": started.attempt,
        }
        if status == "failed":
            data["retrying"] = retrying
        if reason is not None:  # abandoned: the why is shown with the steps (messages, reports)
            data["reason"] = reason
            resume = {"step": "resume", "result": "abandoned", "before": {}, "after": {}, "message": reason}
            tx.update_rollback(started.incident, step=("resume", {"incident": started.incident, **resume}))
        tx.append_audit("rollback.result", data, target=started.target.key)
        noticed = {**data, "rejected_at": rejected_at} if rejected_at else data  # GitOps: the annotation's time
        self.notice(tx, Notice(kind="rollback", incident=started.incident, target=started.target.key, data=noticed))

    # -- admin --

    def pause(self, tx: Tx, item: CoreInput, state: dict[str, Any]) -> None:
        tx.append_core_input(item)
        tx.record_pause(state)

    def restore_action(self, tx: Tx, incident: str, target: str, actor: str, data: dict[str, Any]) -> None:
        tx.append_audit("restore.action", {"incident": incident, **data}, target=target, actor=actor)
        if data.get("result") not in ("intent", StepResult.DRY_RUN.value):
            # Beside the rollback's own steps, kept as they were (its "check" becomes "restore_check"): what the
            # restore undid, and who asked.
            name = str(data["step"])
            name = name if "restore" in name.split(":", 1)[0] else f"restore_{name}"
            tx.update_rollback(incident, step=(name, {**data, "step": name, "actor": actor}))

    def restored(
        self,
        tx: Tx,
        *,
        incident: str,
        incidents: Sequence[str],
        target: str,
        status: str,
        actor: str,
        item: CoreInput | None,
    ) -> None:
        if item is not None:
            tx.append_core_input(item)
            for each in incidents:  # every rollback since the last restore is undone together
                tx.update_rollback(each, status="restored", spec={"retrying": False})
        data = {"incident": incident, "status": status, "actor": actor}
        tx.append_audit("restore.result", data, target=target, actor=actor)
        kind = "restored" if status == "restored" else "restore_" + status
        self.notice(tx, Notice(kind=kind, incident=incident, target=target, data=data))


def _notice_kind(decision: Decision) -> str | None:
    if decision.outcome is Outcome.CANCELLED and decision.incident:
        return "retry_stopped"
    kind = _NOTICE_KINDS.get(decision.outcome)
    if kind == "held" and PAUSED_PREFIX in decision.reason:
        return "paused_hold"
    return kind


def _log_decision(decision: Decision) -> None:
    where = decision.target.key if decision.target else "(no target)"
    what = f"{decision.event.alertname or '?'} on {where}: {decision.outcome.value.upper()} - {decision.reason}"
    if decision.outcome is Outcome.ERROR:
        log.error("alert %s", what)
    elif decision.outcome in (Outcome.HELD, Outcome.REFUSED, Outcome.ROLLBACK, Outcome.RETRY):
        log.warning("alert %s", what)


def cite(event: AlertEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "alertname": event.alertname,
        "fingerprint": event.fingerprint,
        "starts_at": iso(event.starts_at),
        "summary": event.annotations.get("summary", ""),
        "description": event.annotations.get("description", ""),
    }


def decision_data(decision: Decision) -> dict[str, Any]:
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


def audited(data: dict[str, Any]) -> dict[str, Any]:
    """A step's audit entry. The evidence step's ``after`` (log tails: up to megabytes, and not the audit log's
    business) is replaced by what it holds and its SHA-256 over the canonical JSON: the chain still vouches for
    the evidence stored with the rollback, and stdout gets one short line."""
    if data.get("step") != Step.EVIDENCE.value:
        return data
    after = data.get("after") or {}
    digest = hashlib.sha256(orjson.dumps(after, option=orjson.OPT_SORT_KEYS)).hexdigest()
    pods = [str(p.get("name")) for p in after.get("pods") or [] if isinstance(p, dict)]
    return {**data, "after": {"pods": pods, "missing": len(after.get("missing") or []), "sha256": digest}}


def step_data(incident: str, outcome: StepOutcome) -> dict[str, Any]:
    return {
        "incident": incident,
        "step": outcome.id,
        "result": outcome.result.value,
        "before": outcome.before,
        "after": outcome.after,
        "attempts": outcome.attempts,
        "duration_ms": round(outcome.duration_s * 1000, 3),
        "reason": outcome.reason.value if outcome.reason else None,
        "message": outcome.message,
    }


def log_result(started: Started, status: str, outcomes: list[StepOutcome], *, retrying: bool) -> None:
    """Log a rollback's end the way on-call needs it: ERROR for anything left to a human."""
    where = f"rollback {started.incident} of {started.target.key}"
    if status == "failed":
        stopped = next((o for o in outcomes if o.result is StepResult.FAILED), None)
        detail = f" at {stopped.id}: {stopped.message}" if stopped else ""
        then = "retried while its alerts fire" if retrying else "manual action required"
        log.error("%s FAILED%s; %s", where, detail, then)
    elif status == "refused":
        log.warning("%s refused by the live safety check", where)
    elif status == "held":
        log.error("%s HELD: the stable Deployment has no ready replica; canary traffic left on, retried", where)
    elif status == "partial":
        left = "; ".join(o.message for o in outcomes if o.reason is FailureReason.INCOMPLETE)
        log.error("%s PARTIAL: %s", where, left)


def interruption(incident: str, target: str, why: str) -> Callable[[Tx], None]:
    """The record of a rollback stopped under way (it stays pending: the next engine resumes it)."""

    def write(tx: Tx) -> None:
        tx.append_audit("rollback.interrupted", {"incident": incident, "why": why}, target=target)

    return write
