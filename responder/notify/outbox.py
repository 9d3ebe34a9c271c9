"""The durable notification outbox and its delivery worker, the same for every notifier (Slack, Teams ...).

Writing: :meth:`Outbox.hook` is one of the engine's notice hooks. It runs inside the transaction that records the
fact (a rollback's result, a held or refused decision, a resolution), on the store's thread, so it only inserts one
row per configured destination and pokes the worker thread-safely: no network, no waiting, and each notification is
durable exactly when its fact is. A rollback never waits on a notifier.

Delivering: one worker task claims due rows in id order (per incident and destination, a follow-up waits for its
first message: a thread reply needs its reference), lets the row's notifier lay the message out and deliver it. A
success marks the row delivered and keeps the thread reference; a retryable failure reschedules it with the shared
backoff (:mod:`responder.retry`; a longer Retry-After wins); a permanent one, or too many attempts, marks it failed.
Every attempt is audited (never with a URL or token) and counted by destination and result. A message that cannot
be built is replaced by the notifier's short form, never dropped.

Delivery is exactly-once except in one window: if the process dies after a destination accepted a message but
before the row is marked delivered, it is sent again after the restart (at-least-once in that crash window only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from responder.metrics import Metrics
from responder.notify.base import Delivered, DeliveryFailed, Message, Notifier
from responder.notify.incident import Links
from responder.notify.incidents import IncidentReader
from responder.notify.prometheus import PrometheusMetrics
from responder.ports import Notice
from responder.relay import DueWorker
from responder.retry import Backoff
from responder.store import OutboxRow, Store, Tx

log = logging.getLogger("responder.outbox")

DEFAULT_BACKOFF = Backoff(attempts=20, base_delay_s=1.0, max_delay_s=300.0, jitter=0.0)
NO_DESTINATION = ""  # rows written when no notifier is configured: recorded (reports see them), never sent


class Outbox(DueWorker):
    """Create in the application's startup, pass :meth:`hook` to the engine, then :meth:`start` / :meth:`stop`."""

    name = "outbox"

    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        notifiers: Mapping[str, Notifier],
        prometheus: PrometheusMetrics,
        links: Links,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
        coalesce_s: float = 0.0,
    ) -> None:
        super().__init__(clock)
        self.coalesce_s = coalesce_s  # HELD notices for one target within this window join the first one
        self.store, self.metrics, self.notifiers, self.links = store, metrics, dict(notifiers), links
        self.prometheus = prometheus
        self.reader = IncidentReader(store, prometheus)
        self.backoff = backoff
        self._depth: int = 0
        self._oldest: float | None = None

    # -- the engine's notice hook: runs on the store's thread inside the recording transaction --

    def hook(self, tx: Tx, notice: Notice) -> None:
        if notice.kind in _NOT_POSTED:
            return  # changed nothing and asked by the person who sees the answer: the audit log has it
        joined = _joined_hold(tx, notice, self.clock() - self.coalesce_s)
        incident, fingerprints = (joined, []) if joined else _incident_key(tx, notice, self.clock())
        if incident is None:
            return  # e.g. a resolution of an alert nobody was told about
        destinations = list(self.notifiers) or [NO_DESTINATION]
        for destination in destinations:
            tx.insert_outbox(
                incident=incident,
                kind=notice.kind,
                destination=destination,
                target=notice.target,
                data=dict(notice.data),
                now=self.clock(),
                # a joined hold is recorded with its incident (reports, pages) but not posted: one message each
                state="pending" if destination != NO_DESTINATION and not joined else "disabled",
                fingerprints=[str(notice.data.get("fingerprint") or "")] if joined else fingerprints,
            )
        if self.notifiers and not joined:
            self.wake_threadsafe()

    # -- lifecycle --

    async def start(self, *, worker: bool = True) -> None:
        """Open the destinations; ``worker``: start delivering now (several replicas: only while leading)."""
        self.bind_loop()
        self.metrics.outbox_depth.set_function(lambda: self._depth)
        self.metrics.outbox_oldest_age.set_function(
            lambda: 0.0 if self._oldest is None else max(0.0, self.clock() - self._oldest)
        )
        await self.prometheus.open()
        for notifier in self.notifiers.values():
            await notifier.open()
        self.wanted = bool(self.notifiers)
        if worker:
            self.start_worker()

    async def stop(self, grace_s: float = 0.0) -> None:
        await self.stop_worker(grace_s)
        for notifier in self.notifiers.values():
            await notifier.close()
        await self.prometheus.close()

    # -- the worker --

    async def next_due(self) -> float | None:
        return await self.store.read(lambda r: r.next_outbox_due())

    async def after_round(self) -> None:
        self._depth, self._oldest = await self.store.read(lambda r: r.outbox_backlog())

    async def deliver_due(self) -> int:
        """Claim the rows due now and try each once; return how many were tried."""
        now = self.clock()
        rows: list[OutboxRow] = await self.store.write(lambda tx: tx.claim_outbox(now=now), term=self.term())
        tried = 0
        for row in rows:
            if self.stopping:  # shutting down: the rest stay pending for the next process
                break
            await self._deliver(row)
            tried += 1
        return tried

    async def _deliver(self, row: OutboxRow) -> None:
        notifier = self.notifiers.get(row.destination)
        try:
            if notifier is None:
                raise DeliveryFailed("no_destination", f"{row.destination!r} is no longer configured", retryable=False)
            if row.role == "incident":
                await self._send_incident(notifier, row)
            else:
                await self._send_followup(notifier, row)
        except DeliveryFailed as exc:
            await self._failed(row, exc.reason, exc.message, exc.retryable, exc.retry_after, exc.status)
        except _NotYet as exc:
            await self._failed(row, "waiting", str(exc), True, None, None)
        except Exception as exc:  # a bug preparing the message: keep the row, retry later, say so
            log.exception("outbox row %d could not be prepared", row.id)
            await self._failed(row, "internal", type(exc).__name__, True, None, None)

    async def _send_incident(self, notifier: Notifier, row: OutboxRow) -> None:
        incident = await self.reader.load(row.incident)
        if incident is None:
            raise _NotYet(f"incident {row.incident} not found")
        if incident.metrics is None:
            incident = replace(incident, metrics=await self.reader.metrics_for(incident))
        message = self._built(notifier, row, lambda: notifier.incident(incident, self.links))
        delivered = await notifier.deliver(message, thread=None)
        metrics = incident.metrics.as_dict() if incident.metrics else None

        def extra(tx: Tx) -> None:
            tx.note_thread(
                row.incident, row.destination, channel=delivered.channel, ref=delivered.thread, metrics=metrics
            )

        await self._delivered(row, extra)

    async def _send_followup(self, notifier: Notifier, row: OutboxRow) -> None:
        def looked_up(reader: Any) -> tuple[str | None, bool, str | None]:
            rows = reader.outbox_rows(row.incident)
            first = next((r for r in rows if r.role == "incident" and r.destination == row.destination), None)
            return reader.thread(row.incident, row.destination).ref, first is not None, first and first.target

        thread, first, about = await self.store.read(looked_up)
        if not first and row.attempts < 3:
            raise _NotYet("the incident's first message is not recorded yet")
        thread = thread if notifier.threads else None
        target = row.target or about  # a resolution carries no target: the incident's
        data = {"target": target, **row.data} if target else row.data  # named when not in a thread
        message = self._built(
            notifier,
            row,
            lambda: notifier.followup(row.incident, row.kind, data, self.links, threaded=thread is not None),
        )
        await notifier.deliver(message, thread=thread)
        await self._delivered(row, None)

    def _built(self, notifier: Notifier, row: OutboxRow, build: Callable[[], Message]) -> Message:
        try:
            return build()
        except Exception as exc:  # never drop the message over a rendering bug: send the short form, loudly
            log.exception("outbox row %d: the message could not be built; sending the short form", row.id)
            return notifier.fallback(row.incident, row.kind, row.target, type(exc).__name__, self.links)

    async def _delivered(self, row: OutboxRow, extra: Callable[[Tx], None] | None) -> None:
        now = self.clock()

        def record(tx: Tx) -> None:
            tx.finish_outbox(row.id, state="delivered", now=now)
            if extra is not None:
                extra(tx)
            tx.append_audit("notification", _audit(row, "delivered"), target=row.target)

        await self.store.write(record, term=self.term())
        self.metrics.notifications.labels("delivered", "", row.destination).inc()

    async def _failed(
        self, row: OutboxRow, reason: str, message: str, retryable: bool, retry_after: float | None, status: int | None
    ) -> None:
        attempts = row.attempts + 1
        give_up = not retryable or self.backoff.exhausted(attempts)
        retry_at = None if give_up else self.clock() + self.backoff.delay(attempts, retry_after=retry_after)
        result = "failed" if give_up else "retry"
        log.warning(
            "notification %d (%s, %s, to %s): %s: %s (%s)",
            row.id,
            row.kind,
            row.incident,
            row.destination,
            reason,
            message,
            result,
        )
        retry_in = None if retry_at is None else round(retry_at - self.clock(), 3)
        data = _audit(row, result, reason=reason, status=status, retry_in_s=retry_in)

        def record(tx: Tx) -> None:
            state = "failed" if give_up else "pending"
            error = f"{reason}: {message}"[:300]
            tx.finish_outbox(row.id, state=state, now=self.clock(), retry_at=retry_at, error=error)
            tx.append_audit("notification", data, target=row.target)

        await self.store.write(record, term=self.term())
        self.metrics.notifications.labels(result, reason, row.destination).inc()


class _NotYet(Exception):
    """The row cannot be sent yet (its incident is still being recorded); retried with backoff."""


def _audit(row: OutboxRow, result: str, **extra: Any) -> dict[str, Any]:
    data = {
        "outbox_id": row.id,
        "incident": row.incident,
        "kind": row.kind,
        "destination": row.destination,
        "attempt": row.attempts + 1,
        "result": result,
    }
    return {**data, **{k: v for k, v in extra.items() if v is not None}}


_NOT_POSTED = frozenset({"restore_dry_run"})
_JOINABLE = frozenset({"held", "paused_hold"})


def _joined_hold(tx: Tx, notice: Notice, since: float) -> str | None:
    """A decision held for a target that already has a held notice within the coalesce window joins it: on-call
    gets one message per target and hold, not one per alert."""
    if notice.kind not in _JOINABLE or notice.incident is not None or not notice.target:
        return None
    return tx.open_notice(notice.kind, notice.target, since)


def _incident_key(tx: Tx, notice: Notice, now: float) -> tuple[str | None, list[str]]:
    """Which incident a notice belongs to, and the alert fingerprints it cites (so a later resolution of one
    of them becomes a follow-up in the same thread)."""
    data = notice.data
    fingerprint = str(data.get("fingerprint") or "")
    if notice.kind == "resolved":
        if not fingerprint:
            return None, []
        return tx.incident_for_alert(fingerprint) or tx.incident_citing(fingerprint), []
    if notice.kind == "rollback" and notice.incident:
        record = tx.rollback(notice.incident)
        cites = record.cites if record else []
        return notice.incident, sorted({str(c.get("fingerprint")) for c in cites if c.get("fingerprint")})
    incident = notice.incident
    if incident is None and notice.kind == "restored" and notice.target:
        incident = tx.latest_incident_of(notice.target)
    if incident is None:
        suffix = data.get("event_id") or f"{fingerprint or 'x'}-{int(now * 1e6)}"
        incident = f"{notice.kind}:{suffix}"
    return incident, [fingerprint] if fingerprint else []


__all__ = ["Delivered", "NO_DESTINATION", "Outbox"]
