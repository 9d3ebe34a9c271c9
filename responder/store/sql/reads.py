"""The reading SQL of both backends (:class:`SqlReader`), and the decoding of rows into the store's records. Only
the writer's thread ever calls them (inside a transaction, through :class:`responder.store.sql.tx.SqlTx`, too)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from responder.core.model import AlertEvent, AlertStatus, TargetRef, iso, parse_iso
from responder.store.records import CoreInput, GitopsRow, OutboxRow, ReplicaRow, RollbackRecord, Thread
from responder.store.sql.dialect import Conn, Dialect

_OUTBOX_COLUMNS = "id, incident, kind, role, target, data, created_at, state, attempts, last_error, destination"
_EVENT_COLUMNS = "id, notification_id, fingerprint, status, starts_at, ends_at, labels, annotations, generator_url"


def where_equal(**filters: Any) -> tuple[str, tuple[Any, ...]]:
    """`` AND column = ?`` for each filter that is not None (PostgreSQL cannot type ``? IS NULL`` alone)."""
    given = {column: value for column, value in filters.items() if value is not None}
    return "".join(f" AND {column} = ?" for column in given), tuple(given.values())


class SqlReader:
    def __init__(self, conn: Conn, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    # -- rollbacks --

    def rollback(self, incident: str) -> RollbackRecord | None:
        row = self.conn.execute(f"SELECT {_ROLLBACK_COLUMNS} FROM rollbacks WHERE incident=?", (incident,)).fetchone()
        return row_rollback(row) if row else None

    def rollbacks(self, *, status: str | None = None, incident: str | None = None) -> list[RollbackRecord]:
        where, args = where_equal(status=status, incident=incident)
        sql = f"SELECT {_ROLLBACK_COLUMNS} FROM rollbacks WHERE 1=1{where} ORDER BY rowid"
        return [row_rollback(row) for row in self.conn.execute(sql, args)]

    def rollbacks_since_restore(self, target: str) -> list[RollbackRecord]:
        sql = f"SELECT {_ROLLBACK_COLUMNS} FROM rollbacks WHERE target=? ORDER BY created_at DESC, rowid DESC"
        found: list[RollbackRecord] = []
        for row in self.conn.execute(sql, (target,)):
            record = row_rollback(row)
            if record.status == "restored":
                break
            found.append(record)
        return found

    def oldest_retrying(self) -> str | None:
        row = self.conn.execute(
            f"SELECT min(created_at) FROM rollbacks WHERE {self.dialect.json.true_of('spec', 'retrying')}"
        ).fetchone()
        return str(row[0]) if row and row[0] else None

    # -- events and the core's inputs --

    def select_events(
        self, where: str, args: tuple[Any, ...], order: str, extra: str = "received_at"
    ) -> list[tuple[AlertEvent, Any]]:
        sql = f"SELECT {_EVENT_COLUMNS}, {extra}, forced FROM events WHERE {where} ORDER BY {order}"
        return [(row_event(row), row[9]) for row in self.conn.execute(sql, args)]

    def undecided_events(self, notification_id: int | None = None) -> list[tuple[AlertEvent, Any]]:
        if notification_id is None:
            return self.select_events("decided_at IS NULL", (), "id")
        return self.select_events("decided_at IS NULL AND notification_id = ?", (notification_id,), "id")

    def undecided_ids(self) -> list[int]:
        return [int(row[0]) for row in self.conn.execute("SELECT id FROM events WHERE decided_at IS NULL ORDER BY id")]

    def events_by_ids(self, event_ids: Sequence[int]) -> dict[int, AlertEvent]:
        found: dict[int, AlertEvent] = {}
        for start in range(0, len(event_ids), 500):
            chunk = tuple(event_ids[start : start + 500])
            where = f"id IN ({','.join('?' * len(chunk))})"
            found.update((event.event_id, event) for event, _ in self.select_events(where, chunk, "id"))
        return found

    def core_inputs(self, since: datetime) -> list[CoreInput]:
        sql = "SELECT seq, at, kind, data, recorded FROM core_log WHERE at >= ? ORDER BY seq"
        return [
            CoreInput(int(r[0]), parse_iso(str(r[1])), str(r[2]), orjson.loads(r[3]), bool(r[4]))
            for r in self.conn.execute(sql, (iso(since),))
        ]

    def last_core_seq(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM core_log").fetchone()[0])

    def event_facts(self, event_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Stored alert events as plain data (what notifications and incident reports cite)."""
        marks = ",".join("?" * len(event_ids))
        keys = ("event_id", "notification_id", "fingerprint", "status", "starts_at", "ends_at")
        return [
            {
                **dict(zip(keys, row[:6], strict=True)),
                "labels": orjson.loads(row[6]),
                "annotations": orjson.loads(row[7]),
                "generator_url": row[8],
            }
            for row in self.conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE id IN ({marks}) ORDER BY id", tuple(event_ids)
            )
        ]

    def raw_notification(self, notification_id: int) -> bytes | None:
        row = self.conn.execute("SELECT raw FROM notifications WHERE id=?", (notification_id,)).fetchone()
        return bytes(row[0]) if row else None

    def kv(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return self.dialect.kv_out(row[0]) if row else None

    # -- leadership and the replicas --

    def leadership(self) -> tuple[int, str | None]:
        row = self.conn.execute("SELECT term, holder FROM leadership WHERE id = 1").fetchone()
        return (int(row[0]), row[1]) if row else (0, None)

    def replicas(self) -> list[ReplicaRow]:
        sql = (
            f"SELECT instance, identity, url, started_at, seen_at, leader_term, {self.dialect.now} FROM replicas"
            " ORDER BY started_at, instance"
        )
        return [ReplicaRow(*row) for row in self.conn.execute(sql)]

    # -- outbox --

    def outbox_rows(self, incident: str) -> list[OutboxRow]:
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE incident=? ORDER BY id"
        return [row_outbox(row) for row in self.conn.execute(sql, (incident,))]

    def thread(self, incident: str, destination: str) -> Thread:
        row = self.conn.execute(
            "SELECT channel, ref, metrics FROM threads WHERE incident=? AND destination=?", (incident, destination)
        ).fetchone()
        if row is None:
            return Thread()
        return Thread(channel=row[0], ref=row[1], metrics=orjson.loads(row[2]) if row[2] else None)

    def outbox_backlog(self) -> tuple[int, float | None]:
        row = self.conn.execute("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state='pending'").fetchone()
        return int(row[0]), row[1]

    def next_outbox_due(self) -> float | None:
        row = self.conn.execute("SELECT MIN(next_attempt_at) FROM outbox WHERE state='pending'").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def notice_incidents(self, limit: int) -> list[str]:
        sql = (
            "SELECT incident FROM outbox WHERE role='incident' AND kind != 'rollback'"
            " GROUP BY incident ORDER BY max(id) DESC LIMIT ?"
        )
        return [str(r[0]) for r in self.conn.execute(sql, (limit,))]

    def open_notice(self, kind: str, target: str, since: float) -> str | None:
        sql = (
            "SELECT incident FROM outbox WHERE role='incident' AND kind=? AND target=? AND created_at >= ?"
            " ORDER BY id DESC LIMIT 1"
        )
        row = self.conn.execute(sql, (kind, target, since)).fetchone()
        return str(row[0]) if row else None

    # -- GitOps webhooks --

    def due_gitops(self, now: float, limit: int = 20) -> list[GitopsRow]:
        rows = self.conn.execute(
            "SELECT id, incident, msg_id, body, attempts FROM gitops_webhooks"
            " WHERE state='pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [GitopsRow(int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), int(r[4])) for r in rows]

    def next_gitops_due(self) -> float | None:
        row = self.conn.execute("SELECT MIN(next_attempt_at) FROM gitops_webhooks WHERE state='pending'").fetchone()
        return float(row[0]) if row and row[0] is not None else None


# -- rows to values --

_ROLLBACK_COLUMNS = "incident, namespace, deployment, created_at, received_at, status, dry_run, steps, cites, spec"


def row_rollback(row: Sequence[Any]) -> RollbackRecord:
    spec = orjson.loads(row[9]) if row[9] else {}
    target = spec.get("target") or {"namespace": row[1], "deployment": row[2]}
    return RollbackRecord(
        incident=row[0],
        target=TargetRef.from_dict(target),
        created_at=row[3],
        received_at=row[4],
        status=row[5],
        dry_run=bool(row[6]),
        steps=orjson.loads(row[7]),
        cites=orjson.loads(row[8]),
        retrying=bool(spec.get("retrying")),
        attempts=int(spec.get("attempts") or 0),
    )


def rollback_spec(record: RollbackRecord) -> dict[str, Any]:
    spec: dict[str, Any] = {"target": record.target.as_dict()}
    if record.retrying:
        spec["retrying"] = True
    if record.attempts:
        spec["attempts"] = record.attempts
    return spec


def row_event(row: Sequence[Any]) -> AlertEvent:
    return AlertEvent(
        event_id=row[0],
        notification_id=row[1],
        fingerprint=row[2],
        status=AlertStatus(row[3]),
        starts_at=parse_iso(row[4]),
        ends_at=parse_iso(row[5]) if row[5] else None,
        labels=orjson.loads(row[6]),
        annotations=orjson.loads(row[7]),
        generator_url=row[8],
        forced=bool(row[10]),
    )


def row_outbox(row: Sequence[Any]) -> OutboxRow:
    return OutboxRow(
        id=row[0],
        incident=row[1],
        kind=row[2],
        role=row[3],
        target=row[4],
        data=orjson.loads(row[5]),
        created_at=row[6],
        state=row[7],
        attempts=row[8],
        last_error=row[9],
        destination=row[10],
    )


def receipt_event(event: AlertEvent) -> dict[str, Any]:
    """One alert as its notification's receipt audit entry records it (the receipt names the notification)."""
    return {
        "event_id": event.event_id,
        "fingerprint": event.fingerprint,
        "status": event.status.value,
        "starts_at": iso(event.starts_at),
        "ends_at": iso(event.ends_at) if event.ends_at else None,
        "alertname": event.alertname,
        "labels": dict(event.labels),
        **({"forced": True} if event.forced else {}),
    }
