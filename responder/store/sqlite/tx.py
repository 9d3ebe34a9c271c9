"""All the writing SQL of the SQLite backend: :class:`SqliteTx`, one unit of work inside the writer's
transaction (it may also query, as a :class:`SqliteReader`)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from responder.core.model import AlertEvent, iso
from responder.store.chain import canonical, entry_hash
from responder.store.records import AuditEntry, CoreInput, OutboxRow, RollbackRecord
from responder.store.sqlite.reads import _OUTBOX_COLUMNS, SqliteReader, event_summary, rollback_spec, row_outbox

if TYPE_CHECKING:
    from responder.store.sqlite.writer import Chain

__all__ = ["SqliteReader", "SqliteTx"]


class SqliteTx(SqliteReader):
    def __init__(self, conn: sqlite3.Connection, chain: Chain, key: bytes | None) -> None:
        super().__init__(conn)
        self.chain = chain
        self.key = key

    # -- audit --

    def append_audit(
        self, kind: str, data: dict[str, Any], *, target: str | None = None, actor: str = "responder"
    ) -> AuditEntry:
        chain = self.chain
        seq = chain.seq + 1
        ts = iso(datetime.now(UTC))
        body = {"seq": seq, "ts": ts, "kind": kind, "target": target, "actor": actor, "data": data}
        digest = entry_hash(chain.hash, body, self.key)
        self.conn.execute(
            "INSERT INTO audit (seq, ts, kind, target, actor, data, prev, hash) VALUES (?,?,?,?,?,?,?,?)",
            (seq, ts, kind, target, actor, canonical(data).decode(), chain.hash, digest),
        )
        entry = AuditEntry(seq, ts, kind, target, actor, data, chain.hash, digest)
        chain.seq, chain.hash = seq, digest
        chain.written.append(entry)
        return entry

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
        sha = hashlib.sha256(raw).hexdigest()
        cursor = self.conn.execute(
            "INSERT INTO notifications (received_at, source, raw, sha256, truncated) VALUES (?,?,?,?,?)",
            (received_at, source, raw, sha, truncated),
        )
        nid = int(cursor.lastrowid or 0)
        receipt = {**meta, "notification_id": nid, "sha256": sha, "truncated_alerts": truncated, "alerts": len(events)}
        self.append_audit("receipt", receipt, actor=source)
        return [self._ingest_event(event, nid, received_at, source) for event in events]

    def _ingest_event(self, event: AlertEvent, nid: int, received_at: float, source: str) -> AlertEvent:
        cursor = self.conn.execute(
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
        stored = event.with_ids(event_id=int(cursor.lastrowid or 0), notification_id=nid)
        self.append_audit("alert", event_summary(stored), actor=source)
        return stored

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
        self.conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

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
        first = (
            self.conn.execute(
                "SELECT 1 FROM outbox WHERE incident=? AND destination=? LIMIT 1", (incident, destination)
            ).fetchone()
            is None
        )
        cursor = self.conn.execute(
            "INSERT INTO outbox (incident, kind, role, target, data, created_at, state, next_attempt_at, destination)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (
                incident,
                kind,
                "incident" if first else "followup",
                target,
                canonical(data).decode(),
                now,
                state,
                now,
                destination,
            ),
        )
        self.conn.executemany(
            "INSERT OR REPLACE INTO outbox_alerts (fingerprint, incident) VALUES (?,?)",
            [(fp, incident) for fp in fingerprints],
        )
        return int(cursor.lastrowid or 0)

    def incident_for_alert(self, fingerprint: str) -> str | None:
        row = self.conn.execute("SELECT incident FROM outbox_alerts WHERE fingerprint=?", (fingerprint,)).fetchone()
        return str(row[0]) if row else None

    def incident_citing(self, fingerprint: str) -> str | None:
        row = self.conn.execute(
            "SELECT r.incident FROM rollbacks AS r, json_each(r.cites) AS c"
            " WHERE json_extract(c.value, '$.fingerprint') = ? ORDER BY r.rowid DESC LIMIT 1",
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
            "INSERT OR IGNORE INTO gitops_webhooks (incident, msg_id, body, state, created_at, next_attempt_at)"
            " VALUES (?,?,?,?,?,?)",
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
