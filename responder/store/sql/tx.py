"""All the writing SQL of both backends: :class:`SqlTx`, one unit of work inside the writer's transaction (it may
also query, as a :class:`SqlReader`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from responder.core.model import AlertEvent, iso
from responder.store.chain import canonical, entry_hash
from responder.store.records import AuditEntry, CoreInput, OutboxRow, RollbackRecord
from responder.store.sql.dialect import Chain, Conn, Dialect
from responder.store.sql.reads import _OUTBOX_COLUMNS, SqlReader, receipt_event, rollback_spec, row_outbox

__all__ = ["SqlReader", "SqlTx"]


RECEIPT_EVENTS = 100
"""At most this many alerts in one audit entry: the ``receipt``, then ``receipt.events`` entries."""

_INSERT_AUDIT = "INSERT INTO audit (seq, ts, kind, target, actor, data, prev, hash) VALUES (?,?,?,?,?,?,?,?)"


class SqlTx(SqlReader):
    """The writes of one transaction. Audit entries are hashed as they are appended (the chain is sequential) but
    their rows are inserted together by :meth:`flush`, one ``executemany`` per write or per batch: the writer
    flushes before it commits (and inside each write's savepoint when it isolates writes), so nothing reads the
    ``audit`` table between an append and its flush. The notifications ingested are signalled to the other
    replicas once, right before the commit (:meth:`flush`)."""

    def __init__(self, conn: Conn, dialect: Dialect, chain: Chain, key: bytes | None) -> None:
        super().__init__(conn, dialect)
        self.chain = chain
        self.key = key
        self._audit_rows: list[tuple[Any, ...]] = []
        self._ingested: list[int] = []

    # -- audit --

    def append_audit(
        self, kind: str, data: dict[str, Any], *, target: str | None = None, actor: str = "responder"
    ) -> AuditEntry:
        chain = self.chain
        seq = chain.seq + 1
        ts = iso(datetime.now(UTC))
        body = {"seq": seq, "ts": ts, "kind": kind, "target": target, "actor": actor, "data": data}
        digest = entry_hash(chain.hash, body, self.key)
        self._audit_rows.append((seq, ts, kind, target, actor, canonical(data).decode(), chain.hash, digest))
        entry = AuditEntry(seq, ts, kind, target, actor, data, chain.hash, digest)
        chain.seq, chain.hash = seq, digest
        chain.written.append(entry)
        return entry

    def flush(self) -> None:
        """Right before the commit (and inside each write's savepoint when the writer isolates writes): insert the
        audit rows appended since the last flush, and send one inbox signal for the notifications ingested. Both
        are forgotten even if this raises: the writer then rolls back the transaction or the write's savepoint,
        and the chain's head with it."""
        rows, self._audit_rows = self._audit_rows, []
        ingested, self._ingested = self._ingested, []
        if rows:
            self.conn.executemany(_INSERT_AUDIT, rows)
        if ingested:
            self.dialect.notify_inbox(self.conn, ingested)

    def discard(self) -> None:
        """Forget what was not flushed: the write (or the transaction) is rolled back."""
        self._audit_rows = []
        self._ingested = []

    # -- the inbox --

    def ingest(
        self,
        raw: bytes,
        events: Sequence[AlertEvent],
        meta: dict[str, Any],
        *,
        received_at: float,
        truncated: int,
        source: str,
    ) -> list[AlertEvent]:
        """The notification's row, one row per alert, and one ``receipt`` audit entry that covers both: the raw
        body's SHA-256 and every alert as stored (id, fingerprint, status, times, labels). A notification of more
        than :data:`RECEIPT_EVENTS` alerts carries the rest in ``receipt.events`` entries of as many each, so that
        no audit entry (nor its JSON line on stdout) grows with the notification."""
        sha = hashlib.sha256(raw).hexdigest()
        nid = self.dialect.insert_id(
            self.conn,
            "INSERT INTO notifications (received_at, source, raw, sha256, truncated) VALUES (?,?,?,?,?)",
            (received_at, source, raw, sha, truncated),
        )
        self._ingested.append(nid)
        stored = [self._ingest_event(event, nid, received_at) for event in events]
        alerts = [receipt_event(event) for event in stored]
        receipt = {
            **meta,
            "notification_id": nid,
            "sha256": sha,
            "truncated_alerts": truncated,
            "alerts": len(events),
            "events": alerts[:RECEIPT_EVENTS],
        }
        self.append_audit("receipt", receipt, actor=source)
        for part, start in enumerate(range(RECEIPT_EVENTS, len(alerts), RECEIPT_EVENTS), start=2):
            more = {"notification_id": nid, "part": part, "events": alerts[start : start + RECEIPT_EVENTS]}
            self.append_audit("receipt.events", more, actor=source)
        return stored

    def _ingest_event(self, event: AlertEvent, nid: int, received_at: float) -> AlertEvent:
        event_id = self.dialect.insert_id(
            self.conn,
            "INSERT INTO events (notification_id, fingerprint, status, starts_at, ends_at, labels, annotations,"
            " generator_url, received_at, forced) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                nid,
                event.fingerprint,
                event.status.value,
                iso(event.starts_at),
                iso(event.ends_at) if event.ends_at else None,
                canonical(dict(event.labels)).decode(),
                canonical(dict(event.annotations)).decode(),
                event.generator_url,
                received_at,
                int(event.forced),
            ),
        )
        return event.with_ids(event_id=event_id, notification_id=nid)

    def mark_decided(self, event_ids: Sequence[int], at: datetime) -> None:
        self.conn.executemany("UPDATE events SET decided_at=? WHERE id=?", [(iso(at), i) for i in event_ids])

    # -- the core's inputs --

    def append_core_input(self, item: CoreInput) -> None:
        self.conn.execute(
            "INSERT INTO core_log (seq, at, kind, data, recorded) VALUES (?,?,?,?,?)",
            (item.seq, iso(item.at), item.kind, canonical(item.data).decode(), int(item.recorded)),
        )

    def mark_input_recorded(self, seq: int) -> None:
        self.conn.execute("UPDATE core_log SET recorded=1 WHERE seq=?", (seq,))

    # -- rollbacks --

    def insert_rollback(self, record: RollbackRecord) -> None:
        target = record.target
        self.conn.execute(
            "INSERT INTO rollbacks (incident, target, namespace, deployment, ingress, created_at, received_at,"
            " status, dry_run, steps, cites, spec) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.incident,
                target.key,
                target.namespace,
                target.deployment,
                None,
                record.created_at,
                record.received_at,
                record.status,
                int(record.dry_run),
                canonical(record.steps).decode(),
                canonical(record.cites).decode(),
                canonical(rollback_spec(record)).decode(),
            ),
        )

    def update_rollback(
        self,
        incident: str,
        *,
        status: str | None = None,
        step: tuple[str, dict[str, Any]] | None = None,
        cite: Any = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        row = self.conn.execute("SELECT steps, cites, spec FROM rollbacks WHERE incident=?", (incident,)).fetchone()
        if row is None:
            return
        steps, cites, stored = orjson.loads(row[0]), orjson.loads(row[1]), orjson.loads(row[2] or "{}")
        if step is not None:
            steps[step[0]] = step[1]
        if cite is not None:
            cites.append(cite)
        if spec is not None:
            stored.update(spec)
        self.conn.execute(
            "UPDATE rollbacks SET steps=?, cites=?, spec=?, status=COALESCE(?, status) WHERE incident=?",
            (canonical(steps).decode(), canonical(cites).decode(), canonical(stored).decode(), status, incident),
        )

    def latest_incident_of(self, target: str) -> str | None:
        row = self.conn.execute(
            "SELECT incident FROM rollbacks WHERE target=? ORDER BY rowid DESC LIMIT 1", (target,)
        ).fetchone()
        return str(row[0]) if row else None

    # -- pause and kv --

    def record_pause(self, state: dict[str, Any]) -> None:
        self.put_kv("pause", canonical(state).decode())
        self.append_audit("pause" if state["paused"] else "resume", state, actor=str(state["actor"]))

    def put_kv(self, key: str, value: str | bytes) -> None:
        self.conn.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, self.dialect.kv_in(value)),
        )

    def delete_kv(self, key: str) -> None:
        self.conn.execute("DELETE FROM kv WHERE key=?", (key,))

    # -- outbox --

    def insert_outbox(
        self,
        *,
        incident: str,
        kind: str,
        destination: str,
        target: str | None,
        data: dict[str, Any],
        now: float,
        state: str = "pending",
        fingerprints: Sequence[str] = (),
    ) -> int:
        row_id = self.dialect.insert_id(  # the first row of an incident per destination is its "incident" message
            self.conn,
            "INSERT INTO outbox (incident, kind, role, target, data, created_at, state, next_attempt_at, destination)"
            " SELECT ?, ?, CASE WHEN EXISTS (SELECT 1 FROM outbox WHERE incident=? AND destination=?)"
            " THEN 'followup' ELSE 'incident' END, ?, ?, ?, ?, ?, ?",
            (
                incident,
                kind,
                incident,
                destination,
                target,
                canonical(data).decode(),
                now,
                state,
                now,
                destination,
            ),
        )
        self.conn.executemany(
            "INSERT INTO outbox_alerts (fingerprint, incident) VALUES (?,?)"
            " ON CONFLICT (fingerprint) DO UPDATE SET incident = excluded.incident",
            [(fp, incident) for fp in fingerprints],
        )
        return row_id

    def incident_for_alert(self, fingerprint: str) -> str | None:
        row = self.conn.execute("SELECT incident FROM outbox_alerts WHERE fingerprint=?", (fingerprint,)).fetchone()
        return str(row[0]) if row else None

    def incident_citing(self, fingerprint: str) -> str | None:
        json = self.dialect.json
        cites, cited = json.elements_of("r.cites", "c"), json.field_of("c.value", "fingerprint")
        row = self.conn.execute(
            f"SELECT r.incident FROM rollbacks AS r, {cites} WHERE {cited} = ? ORDER BY r.rowid DESC LIMIT 1",
            (fingerprint,),
        ).fetchone()
        return str(row[0]) if row else None

    def claim_outbox(self, *, now: float, limit: int = 20) -> list[OutboxRow]:
        rows = self.conn.execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox AS o WHERE state='pending' AND next_attempt_at <= ? AND NOT"
            " EXISTS (SELECT 1 FROM outbox AS e WHERE e.incident = o.incident AND e.destination = o.destination"
            " AND e.id < o.id AND e.state = 'pending') ORDER BY id LIMIT ?",
            (now, limit),
        ).fetchall()
        self.conn.executemany("UPDATE outbox SET claimed_at=? WHERE id=?", [(now, row[0]) for row in rows])
        return [row_outbox(row) for row in rows]

    def finish_outbox(
        self, row_id: int, *, state: str, now: float, retry_at: float | None = None, error: str | None = None
    ) -> None:
        self.conn.execute(
            "UPDATE outbox SET state=?, attempts=attempts+1, next_attempt_at=COALESCE(?, next_attempt_at),"
            " delivered_at=CASE WHEN ?='delivered' THEN ? ELSE delivered_at END, last_error=? WHERE id=?",
            (state, retry_at, state, now, error, row_id),
        )

    def note_thread(
        self,
        incident: str,
        destination: str,
        *,
        channel: str | None = None,
        ref: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO threads (incident, destination, channel, ref, metrics) VALUES (?,?,?,?,?)"
            " ON CONFLICT (incident, destination) DO UPDATE SET channel=COALESCE(excluded.channel, channel),"
            " ref=COALESCE(excluded.ref, ref), metrics=COALESCE(excluded.metrics, metrics)",
            (incident, destination, channel, ref, canonical(metrics).decode() if metrics is not None else None),
        )

    # -- GitOps webhooks --

    def insert_gitops(self, *, incident: str, msg_id: str, body: bytes, now: float) -> bool:
        cursor = self.conn.execute(
            "INSERT INTO gitops_webhooks (incident, msg_id, body, state, created_at, next_attempt_at)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (incident, msg_id, body, "pending", now, now),
        )
        return cursor.rowcount == 1

    def finish_gitops(
        self, row_id: int, *, state: str, now: float, retry_at: float | None = None, error: str | None = None
    ) -> None:
        self.conn.execute(
            "UPDATE gitops_webhooks SET state=?, attempts=attempts+1, next_attempt_at=?, delivered_at=?,"
            " last_error=? WHERE id=?",
            (state, retry_at or now, now if state == "delivered" else None, error, row_id),
        )

    # -- leadership and the replicas (never fenced themselves) --

    def current_term(self) -> int:
        """The leadership term, read with a row lock held to the end of the transaction: a take-over waits for
        this transaction, so a write checked against the old term commits before the new term exists, or not."""
        row = self.conn.execute(f"SELECT term FROM leadership WHERE id = 1{self.dialect.for_share}").fetchone()
        return int(row[0]) if row else 0

    def take_leadership(self, holder: str) -> int:
        self.conn.execute(
            f"UPDATE leadership SET term = term + 1, holder = ?, since = {self.dialect.now} WHERE id = 1", (holder,)
        )
        term = int(self.conn.execute("SELECT term FROM leadership WHERE id = 1").fetchone()[0])
        self.append_audit("leadership", {"holder": holder, "term": term}, actor=holder)
        return term

    def heartbeat(self, *, instance: str, identity: str, url: str | None, leader_term: int | None) -> None:
        now = self.dialect.now
        self.conn.execute(
            "INSERT INTO replicas (instance, identity, url, started_at, seen_at, leader_term)"
            f" VALUES (?, ?, ?, {now}, {now}, ?) ON CONFLICT (instance) DO UPDATE SET identity = excluded.identity,"
            " url = excluded.url, seen_at = excluded.seen_at, leader_term = excluded.leader_term",
            (instance, identity, url, leader_term),
        )

    def forget_replica(self, instance: str) -> None:
        self.conn.execute("DELETE FROM replicas WHERE instance = ?", (instance,))
