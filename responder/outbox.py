"""The durable notification outbox and its delivery worker (Slack).

Writing: :meth:`Outbox.hook` is the engine's ``notice_hook``. The engine calls it inside the transaction that
records the fact (a rollback's result, a held or refused decision, a resolution), on the store's thread, so it
only INSERTs a row and pokes the worker thread-safely: no network, no waiting, and the notification is durable
exactly when its fact is. A rollback therefore never waits on Slack.

Delivering: one worker task with its own HTTP sessions (the Slack and Prometheus adapters, each with a total
timeout) claims due rows in id order, builds the message (:mod:`responder.notify`) and posts it. Success marks
the row delivered and stores the message's ``ts`` for thread replies; a retryable failure reschedules it with
capped exponential backoff, or after a 429's ``Retry-After`` when that is longer; a permanent failure (bad
token, unknown channel, invalid payload) or too many attempts marks it failed. Every attempt is audited (never
with a URL or token) and counted.

Delivery is exactly-once except in one window: if the process dies after Slack accepted a message but before
the row is marked delivered, the row is still pending and is sent again after the restart (at-least-once to
Slack in that crash window only). A follow-up is not sent before its incident's first message (it needs the
thread ``ts``); with an incoming webhook, which has no threads, it is a new message naming the incident.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from responder.adapters.prometheus import PrometheusMetrics
from responder.adapters.slack import SlackError, SlackSender
from responder.config import Secrets, Settings
from responder.engine import Notice
from responder.metrics import Metrics
from responder.notify import (
    Incident,
    Links,
    MetricsSnapshot,
    fallback_message,
    followup_message,
    incident_message,
)
from responder.relay import DueWorker
from responder.store import OutboxRow, RollbackRecord, Store, iso

log = logging.getLogger("responder.outbox")

PRIMARY_KINDS = frozenset({"rollback", "held", "refused", "notify", "paused_hold", "error"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 300.0
    max_attempts: int = 20

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds before the next try after ``attempts`` failed tries; a 429's Retry-After is honoured."""
        backoff = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        return float(max(backoff, retry_after) if retry_after is not None else backoff)


class IncidentReader:
    """Assembles :class:`responder.notify.Incident` values from the database (for messages and reports)."""

    def __init__(self, store: Store, prometheus: PrometheusMetrics | None = None) -> None:
        self.store = store
        self.prometheus = prometheus

    async def load(self, incident_id: str, *, live_metrics: bool = False) -> Incident | None:
        records = await self.store.rollbacks(incident=incident_id)
        record = records[0] if records else None
        rows, note = await self.store.read(
            lambda conn: (Store.outbox_rows(conn, incident_id), Store.incident_note(conn, incident_id))
        )
        first = next((r for r in rows if r.role == "incident"), None)
        if record is not None:
            incident = await self._from_rollback(record)
        elif first is not None and first.kind in PRIMARY_KINDS:
            incident = await self._from_notice(first)
        else:
            return None
        if note.get("metrics"):
            incident = replace(incident, metrics=MetricsSnapshot.from_dict(note["metrics"]))
        elif live_metrics:
            incident = replace(incident, metrics=await self.metrics_for(incident))
        return incident

    async def followups(self, incident_id: str) -> list[dict[str, Any]]:
        rows = await self.store.read(lambda conn: Store.outbox_rows(conn, incident_id))
        return [
            {**r.data, "kind": r.kind, "at": iso(datetime.fromtimestamp(r.created_at, UTC)), "delivery": r.state}
            for r in rows
            if r.role == "followup"
        ]

    async def recent(self, *, limit: int = 100) -> list[Incident]:
        records = await self.store.rollbacks()
        sql = "SELECT incident FROM outbox WHERE role='incident' AND kind != 'rollback' ORDER BY id DESC LIMIT ?"
        others = await self.store.read(lambda conn: [str(r[0]) for r in conn.execute(sql, (limit,))])
        found = [await self._from_rollback(r, with_events=False) for r in records[-limit:]]
        for incident_id in others:
            loaded = await self.load(incident_id)
            if loaded is not None:
                found.append(loaded)
        return sorted(found, key=lambda i: i.created_at, reverse=True)[:limit]

    async def metrics_for(self, incident: Incident) -> MetricsSnapshot:
        at = datetime.fromisoformat(incident.created_at.replace("Z", "+00:00"))
        if self.prometheus is None or not incident.namespace:
            return MetricsSnapshot(at=incident.created_at, unavailable="no Prometheus URL configured")
        labels = incident.alerts[0].get("labels", {}) if incident.alerts else {}
        app = str(labels.get("app") or (incident.deployment or "").removesuffix("-canary"))
        return await self.prometheus.snapshot(namespace=incident.namespace, app=app, at=at)

    async def _events(self, ids: list[int]) -> list[dict[str, Any]]:
        ids = [i for i in ids if i]
        if not ids:
            return []
        return await self.store.read(lambda conn: Store.event_facts(conn, ids))

    async def _from_rollback(self, record: RollbackRecord, *, with_events: bool = True) -> Incident:
        cites = [c for c in record.cites if isinstance(c, dict)]
        events = await self._events([int(c.get("event_id") or 0) for c in cites]) if with_events else []
        reason = "; ".join(f"{c.get('alertname')}: {c.get('summary') or c.get('description') or ''}" for c in cites)
        return Incident(
            id=record.incident,
            kind="rollback",
            status=record.status,
            created_at=record.created_at,
            target=record.target,
            namespace=record.namespace,
            deployment=record.deployment,
            reason=reason,
            dry_run=record.dry_run,
            steps=record.steps,
            alerts=events or cites,
            retrying=record.retrying,
        )

    async def _from_notice(self, row: OutboxRow) -> Incident:
        # "namespace/deployment", or "cluster/namespace/deployment" with several clusters
        *_, namespace, deployment = ["", "", *(row.target or "").split("/")]
        return Incident(
            id=row.incident,
            kind=row.kind,
            status=row.kind,
            created_at=iso(datetime.fromtimestamp(row.created_at, UTC)),
            target=row.target,
            namespace=namespace or None,
            deployment=deployment or None,
            reason=str(row.data.get("reason") or ""),
            alerts=await self._events([int(row.data.get("event_id") or 0)]),
        )


class Outbox(DueWorker):
    """Create in the application's startup, pass :meth:`hook` to the Engine, then :meth:`start` / :meth:`stop`."""

    name = "outbox"

    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        sender: SlackSender | None,
        prometheus: PrometheusMetrics,
        links: Links,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.metrics, self.sender, self.links = store, metrics, sender, links
        self.prometheus = prometheus
        self.reader = IncidentReader(store, prometheus)
        super().__init__(clock)
        self.backoff = backoff
        self._depth: int = 0
        self._oldest: float | None = None

    # -- the engine's notice hook: runs on the store's thread inside the recording transaction --

    def hook(self, conn: sqlite3.Connection, notice: Notice) -> None:
        incident, fingerprints = _incident_key(conn, notice, self.clock())
        if incident is None:
            return  # e.g. a resolution of an alert nobody was told about
        state = "pending" if self.sender is not None else "disabled"
        Store.insert_outbox(
            conn,
            incident=incident,
            kind=notice.kind,
            target=notice.target,
            data=dict(notice.data),
            now=self.clock(),
            state=state,
            fingerprints=fingerprints,
        )
        if state == "pending":
            self.wake_threadsafe()

    # -- lifecycle --

    async def start(self) -> None:
        self.bind_loop()
        self.metrics.outbox_depth.set_function(lambda: self._depth)
        self.metrics.outbox_oldest_age.set_function(
            lambda: 0.0 if self._oldest is None else max(0.0, self.clock() - self._oldest)
        )
        await self.prometheus.open()
        if self.sender is not None:
            await self.sender.open()
            self.start_worker()

    async def stop(self) -> None:
        await self.stop_worker()
        if self.sender is not None:
            await self.sender.close()
        await self.prometheus.close()

    # -- the worker --

    async def next_due(self) -> float | None:
        due: float | None = await self.store.read(Store.next_outbox_due)
        return due

    async def after_round(self) -> None:
        await self._refresh_backlog()

    async def deliver_due(self) -> int:
        """Claim the rows due now and try each once; return how many were tried."""
        now = self.clock()
        rows: list[OutboxRow] = await self.store.write(lambda conn: Store.claim_outbox(conn, now=now))
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def _refresh_backlog(self) -> None:
        self._depth, self._oldest = await self.store.read(Store.outbox_backlog)

    async def _deliver(self, row: OutboxRow) -> None:
        assert self.sender is not None
        try:
            if row.role == "incident":
                await self._send_incident(row)
            else:
                await self._send_followup(row)
        except SlackError as exc:
            await self._failed(row, exc.reason.value, exc.message, exc.reason.retryable, exc.retry_after, exc.status)
        except _NotYet as exc:
            await self._failed(row, "waiting", str(exc), True, None, None)
        except Exception as exc:  # a bug building the message: keep the row, retry later, say so
            log.exception("outbox row %d could not be prepared", row.id)
            await self._failed(row, "internal", type(exc).__name__, True, None, None)

    async def _send_incident(self, row: OutboxRow) -> None:
        assert self.sender is not None
        incident = await self.reader.load(row.incident)
        if incident is None:
            raise _NotYet(f"incident {row.incident} not found")
        if incident.metrics is None:
            incident = replace(incident, metrics=await self.reader.metrics_for(incident))
        try:
            message = incident_message(incident, self.links)
        except Exception as exc:  # never drop the message over a rendering bug: send the short form, loudly
            log.exception("outbox row %d: the message could not be built; sending the short form", row.id)
            message = fallback_message(row.incident, row.kind, row.target, type(exc).__name__, self.links)
        posted = await self.sender.post(text=message.text, blocks=message.blocks)
        metrics = incident.metrics.as_dict() if incident.metrics else None
        await self._delivered(
            row,
            lambda conn: Store.note_incident(conn, row.incident, channel=posted.channel, ts=posted.ts, metrics=metrics),
        )

    async def _send_followup(self, row: OutboxRow) -> None:
        assert self.sender is not None
        note, first = await self.store.read(
            lambda conn: (
                Store.incident_note(conn, row.incident),
                next((r for r in Store.outbox_rows(conn, row.incident) if r.role == "incident"), None),
            )
        )
        if first is None and row.attempts < 3:
            raise _NotYet("the incident's first message is not recorded yet")
        thread = note.get("ts") if self.sender.threads else None
        try:
            message = followup_message(row.incident, row.kind, row.data, self.links, threaded=thread is not None)
        except Exception as exc:
            log.exception("outbox row %d: the follow-up could not be built; sending the short form", row.id)
            message = fallback_message(row.incident, row.kind, row.target, type(exc).__name__, self.links)
        await self.sender.post(text=message.text, blocks=message.blocks, thread_ts=thread)
        await self._delivered(row, None)

    async def _delivered(self, row: OutboxRow, extra: Callable[[sqlite3.Connection], None] | None) -> None:
        now = self.clock()

        def record(conn: sqlite3.Connection) -> None:
            Store.finish_outbox(conn, row.id, state="delivered", now=now)
            if extra is not None:
                extra(conn)
            self.store.append_audit(conn, "notification", _audit(row, "delivered"), target=row.target)

        await self.store.write(record)
        self.metrics.notifications.labels("delivered", "").inc()

    async def _failed(
        self, row: OutboxRow, reason: str, message: str, retryable: bool, retry_after: float | None, status: int | None
    ) -> None:
        attempts = row.attempts + 1
        give_up = not retryable or attempts >= self.backoff.max_attempts
        retry_at = None if give_up else self.clock() + self.backoff.delay(attempts, retry_after)
        result = "failed" if give_up else "retry"
        log.warning("notification %d (%s, %s): %s: %s (%s)", row.id, row.kind, row.incident, reason, message, result)
        data = _audit(
            row,
            result,
            reason=reason,
            status=status,
            retry_in_s=None if retry_at is None else round(retry_at - self.clock(), 3),
        )

        def record(conn: sqlite3.Connection) -> None:
            state = "failed" if give_up else "pending"
            Store.finish_outbox(
                conn, row.id, state=state, now=self.clock(), retry_at=retry_at, error=f"{reason}: {message}"[:300]
            )
            self.store.append_audit(conn, "notification", data, target=row.target)

        await self.store.write(record)
        self.metrics.notifications.labels(result, reason).inc()


class _NotYet(Exception):
    """The row cannot be sent yet (its incident is still being recorded); retried with backoff."""


def _audit(row: OutboxRow, result: str, **extra: Any) -> dict[str, Any]:
    data = {
        "outbox_id": row.id,
        "incident": row.incident,
        "kind": row.kind,
        "attempt": row.attempts + 1,
        "result": result,
    }
    return {**data, **{k: v for k, v in extra.items() if v is not None}}


def _incident_key(conn: sqlite3.Connection, notice: Notice, now: float) -> tuple[str | None, list[str]]:
    """Which incident a notice belongs to, and the alert fingerprints it cites (so a later resolution of one
    of them becomes a follow-up in the same thread)."""
    data = notice.data
    fingerprint = str(data.get("fingerprint") or "")
    if notice.kind == "resolved":
        return _incident_of_alert(conn, fingerprint), []
    if notice.kind == "rollback" and notice.incident:
        row = conn.execute("SELECT cites FROM rollbacks WHERE incident=?", (notice.incident,)).fetchone()
        cites = orjson.loads(row[0]) if row else []
        return notice.incident, sorted({str(c.get("fingerprint")) for c in cites if c.get("fingerprint")})
    incident = notice.incident
    if incident is None and notice.kind == "restored" and notice.target:
        row = conn.execute(
            "SELECT incident FROM rollbacks WHERE target=? ORDER BY rowid DESC LIMIT 1", (notice.target,)
        ).fetchone()
        incident = str(row[0]) if row else None
    if incident is None:
        suffix = data.get("event_id") or f"{fingerprint or 'x'}-{int(now * 1e6)}"
        incident = f"{notice.kind}:{suffix}"
    return incident, [fingerprint] if fingerprint else []


def _incident_of_alert(conn: sqlite3.Connection, fingerprint: str) -> str | None:
    if not fingerprint:
        return None
    found = Store.incident_for_alert(conn, fingerprint)
    if found is not None:
        return found
    # A rollback still under way has no message yet: find it by its cited alerts.
    row = conn.execute(
        "SELECT r.incident FROM rollbacks AS r, json_each(r.cites) AS c"
        " WHERE json_extract(c.value, '$.fingerprint') = ? ORDER BY r.rowid DESC LIMIT 1",
        (fingerprint,),
    ).fetchone()
    return str(row[0]) if row else None


def links_from(settings: Settings) -> Links:
    n = settings.notifications
    return Links(
        public_url=n.public_url,
        dashboard_url=n.dashboard_url,
        alertmanager_url=n.alertmanager_url,
        runbook_url=n.runbook_url,
    )


def build_outbox(settings: Settings, secrets: Secrets, *, store: Store, metrics: Metrics) -> Outbox:
    """The outbox for these settings; without a Slack configuration it still records (state ``disabled``), so
    incident reports see every incident, but sends nothing."""
    n = settings.notifications
    sender = None
    if n.slack is not None:
        sender = SlackSender(
            webhook_url=secrets.slack_webhook_url.get_secret_value() if secrets.slack_webhook_url else None,
            bot_token=secrets.slack_bot_token.get_secret_value() if secrets.slack_bot_token else None,
            channel=n.slack.channel,
            api_base_url=n.slack.api_base_url,
            timeout_s=n.slack.timeout.total_seconds(),
        )
    return Outbox(
        store=store,
        metrics=metrics,
        sender=sender,
        prometheus=PrometheusMetrics(n.prometheus_url, timeout_s=n.prometheus_timeout.total_seconds()),
        links=links_from(settings),
        backoff=Backoff(
            base_s=n.outbox.base_delay.total_seconds(),
            cap_s=n.outbox.max_delay.total_seconds(),
            max_attempts=n.outbox.max_attempts,
        ),
    )
