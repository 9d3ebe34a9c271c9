"""Durable state in one SQLite database (WAL, synchronous=FULL): the inbox, the rollbacks and the audit chain.

Concurrency: one connection, used only from one dedicated thread. Every write is a small function queued to a
batcher task that runs all queued writes in one transaction and one commit (group commit): under load many
webhooks share one fsync, and a caller's future resolves only after its rows are durable. If a transaction fails
(disk full, read-only file) every write in it fails with :class:`StoreUnavailable` and the batch is rolled back,
including the in-memory audit head, so the chain stays contiguous.

The audit log is append-only: entry ``n`` stores the hash of entry ``n-1`` and its own SHA-256 (HMAC-SHA256
when a key is configured) over canonical JSON. A receipt entry carries the SHA-256 of the raw notification,
which itself is kept in ``notifications`` for replay, so editing either is detected by :func:`verify_chain`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from responder.core.model import AlertEvent, AlertStatus

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]
AuditSink = Callable[[list[dict[str, Any]]], None]  # called once per commit with its new entries

GENESIS = "0" * 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY, received_at REAL NOT NULL, source TEXT NOT NULL, raw BLOB NOT NULL,
    sha256 TEXT NOT NULL, truncated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, notification_id INTEGER NOT NULL, fingerprint TEXT NOT NULL, status TEXT NOT NULL,
    starts_at TEXT NOT NULL, ends_at TEXT, labels TEXT NOT NULL, annotations TEXT NOT NULL,
    generator_url TEXT NOT NULL, received_at REAL NOT NULL, decided_at TEXT, forced INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_undecided ON events (id) WHERE decided_at IS NULL;
CREATE INDEX IF NOT EXISTS events_decided_at ON events (decided_at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, kind TEXT NOT NULL, target TEXT, actor TEXT NOT NULL,
    data TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target, seq);
CREATE TABLE IF NOT EXISTS rollbacks (
    incident TEXT PRIMARY KEY, target TEXT NOT NULL, namespace TEXT NOT NULL, deployment TEXT NOT NULL,
    ingress TEXT, created_at TEXT NOT NULL, received_at REAL NOT NULL, status TEXT NOT NULL,
    dry_run INTEGER NOT NULL, steps TEXT NOT NULL DEFAULT '{}', cites TEXT NOT NULL DEFAULT '[]',
    spec TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, incident TEXT NOT NULL, kind TEXT NOT NULL, role TEXT NOT NULL, target TEXT,
    data TEXT NOT NULL, created_at REAL NOT NULL, state TEXT NOT NULL, next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, claimed_at REAL, delivered_at REAL, last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_incident ON outbox (incident, id);
CREATE TABLE IF NOT EXISTS outbox_alerts (fingerprint TEXT PRIMARY KEY, incident TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incident_notes (
    incident TEXT PRIMARY KEY, channel TEXT, ts TEXT, metrics TEXT
);
"""


def _migrate(conn: sqlite3.Connection) -> None:
    """Columns added after a database may have been created (CREATE TABLE IF NOT EXISTS does not add them)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    if "forced" not in columns:
        conn.execute("ALTER TABLE events ADD COLUMN forced INTEGER NOT NULL DEFAULT 0")
    rollback_columns = {row[1] for row in conn.execute("PRAGMA table_info(rollbacks)")}
    if "spec" not in rollback_columns:  # the target's cluster and HTTPRoute (multi-cluster, Gateway API)
        conn.execute("ALTER TABLE rollbacks ADD COLUMN spec TEXT NOT NULL DEFAULT '{}'")


class StoreUnavailable(Exception):
    """The database cannot be written (disk full, read-only, locked): callers answer 503 and retry later."""


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def entry_hash(prev: str, body: dict[str, Any], key: bytes | None) -> str:
    message = prev.encode() + canonical(body)
    if key:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: str
    kind: str
    target: str | None
    actor: str
    data: dict[str, Any]
    prev: str
    hash: str

    def body(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "target": self.target,
            "actor": self.actor,
            "data": self.data,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.body(), "prev": self.prev, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    length: int
    head: str
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Chain:
    """The audit head; advanced inside a transaction, rolled back with it."""

    seq: int = 0
    hash: str = GENESIS
    written: list[AuditEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RollbackRecord:
    incident: str
    target: str
    namespace: str
    deployment: str
    ingress: str | None
    created_at: str
    received_at: float
    status: str
    dry_run: bool
    steps: dict[str, Any]
    cites: list[Any]
    cluster: str = ""  # multi-cluster: the cluster the target lives in ("" with one cluster)
    httproute: str | None = None
    canary_backend: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One notification to deliver. ``role`` is ``incident`` for the first message about an incident and
    ``followup`` for later ones (thread replies)."""

    id: int
    incident: str
    kind: str
    role: str
    target: str | None
    data: dict[str, Any]
    created_at: float
    state: str
    attempts: int
    last_error: str | None


_OUTBOX_COLUMNS = "id, incident, kind, role, target, data, created_at, state, attempts, last_error"


class Store:
    """The responder's database. Create with :meth:`open`, stop with :meth:`close`."""

    def __init__(
        self, path: Path, *, audit_key: bytes | None = None, sink: AuditSink | None = None, max_batch: int = 512
    ) -> None:
        self.path = path
        self._key = audit_key
        self._sink = sink
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None
        self._chain = _Chain()
        # Two lanes into the group commit: urgent writes (rollback intents) go into a transaction of their own,
        # ahead of whatever else is queued, so a storm's bulk records never stand between an alert and its
        # rollback. Within each lane the order of calls is kept.
        self._urgent: collections.deque[tuple[Write, asyncio.Future[Any]]] = collections.deque()
        self._normal: collections.deque[tuple[Write, asyncio.Future[Any]]] = collections.deque()
        self._ready = asyncio.Event()
        self._batcher: asyncio.Task[None] | None = None

    # -- lifecycle --

    async def open(self) -> None:
        await self._run(self._connect)
        self._batcher = asyncio.create_task(self._batch_loop(), name="store-batcher")

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
            await asyncio.gather(self._batcher, return_exceptions=True)
            self._batcher = None
        await self._run(self._disconnect)
        self._executor.shutdown(wait=True)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=2000")
        conn.executescript(_SCHEMA)
        _migrate(conn)
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self._chain = _Chain(row[0], row[1]) if row else _Chain()
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # -- group commit --

    async def write(self, fn: Write, *, urgent: bool = False) -> Any:
        """Run ``fn(conn)`` in the next transaction; return its result once committed."""
        return await self.submit(fn, urgent=urgent)

    def submit(self, fn: Write, *, urgent: bool = False) -> asyncio.Future[Any]:
        """Queue ``fn(conn)`` for the next transaction now (keeping the order of calls within its lane); the
        future resolves once it is committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._normal).append((fn, future))
        self._ready.set()
        return future

    def _next_batch(self) -> list[tuple[Write, asyncio.Future[Any]]]:
        lane = self._urgent if self._urgent else self._normal
        batch = [lane.popleft() for _ in range(min(len(lane), self._max_batch))]
        if not self._urgent and not self._normal:
            self._ready.clear()
        return batch

    async def _batch_loop(self) -> None:
        while True:
            await self._ready.wait()
            batch = self._next_batch()
            try:
                results, entries = await asyncio.get_running_loop().run_in_executor(self._executor, self._commit, batch)
            except StoreUnavailable as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreUnavailable(str(exc)))
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            self._emit(entries)

    def _commit(self, batch: Sequence[tuple[Write, asyncio.Future[Any]]]) -> tuple[list[Any], list[AuditEntry]]:
        conn = self._require()
        saved = (self._chain.seq, self._chain.hash)
        self._chain.written = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [fn(conn) for fn, _ in batch]
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            self._chain.seq, self._chain.hash = saved
            self._chain.written = []
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailable(f"database write failed: {exc}") from exc
        return results, self._chain.written

    def _emit(self, entries: list[AuditEntry]) -> None:
        if self._sink is not None and entries:
            self._sink([entry.as_dict() for entry in entries])

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable("database is closed")
        return self._conn

    # -- audit (call only inside a write function) --

    def append_audit(
        self,
        conn: sqlite3.Connection,
        kind: str,
        data: dict[str, Any],
        *,
        target: str | None = None,
        actor: str = "responder",
    ) -> AuditEntry:
        seq = self._chain.seq + 1
        ts = iso(datetime.now(UTC))
        body = {"seq": seq, "ts": ts, "kind": kind, "target": target, "actor": actor, "data": data}
        digest = entry_hash(self._chain.hash, body, self._key)
        conn.execute(
            "INSERT INTO audit (seq, ts, kind, target, actor, data, prev, hash) VALUES (?,?,?,?,?,?,?,?)",
            (seq, ts, kind, target, actor, canonical(data).decode(), self._chain.hash, digest),
        )
        entry = AuditEntry(seq, ts, kind, target, actor, data, self._chain.hash, digest)
        self._chain.seq, self._chain.hash = seq, digest
        self._chain.written.append(entry)
        return entry

    async def audit(
        self, kind: str, data: dict[str, Any], *, target: str | None = None, actor: str = "responder"
    ) -> AuditEntry:
        entry: AuditEntry = await self.write(
            lambda conn: self.append_audit(conn, kind, data, target=target, actor=actor)
        )
        return entry

    @property
    def chain_length(self) -> int:
        return self._chain.seq

    @property
    def chain_head(self) -> str:
        return self._chain.hash

    # -- inbox --

    async def ingest(
        self,
        raw: bytes,
        events: Sequence[AlertEvent],
        meta: dict[str, Any],
        *,
        received_at: float,
        truncated: int = 0,
        source: str = "alertmanager",
    ) -> list[AlertEvent]:
        """Store one notification and its events durably; return the events with their ids."""
        stored: list[AlertEvent] = await self.write(
            lambda conn: self._ingest(conn, raw, events, meta, received_at, truncated, source)
        )
        return stored

    def _ingest(
        self,
        conn: sqlite3.Connection,
        raw: bytes,
        events: Sequence[AlertEvent],
        meta: dict[str, Any],
        received_at: float,
        truncated: int,
        source: str,
    ) -> list[AlertEvent]:
        sha = hashlib.sha256(raw).hexdigest()
        cursor = conn.execute(
            "INSERT INTO notifications (received_at, source, raw, sha256, truncated) VALUES (?,?,?,?,?)",
            (received_at, source, raw, sha, truncated),
        )
        nid = int(cursor.lastrowid or 0)
        self.append_audit(
            conn,
            "receipt",
            {**meta, "notification_id": nid, "sha256": sha, "truncated_alerts": truncated, "alerts": len(events)},
            actor=source,
        )
        return [self._ingest_event(conn, event, nid, received_at, source) for event in events]

    def _ingest_event(
        self, conn: sqlite3.Connection, event: AlertEvent, nid: int, received_at: float, source: str
    ) -> AlertEvent:
        cursor = conn.execute(
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
        stored = _with_ids(event, event_id=int(cursor.lastrowid or 0), notification_id=nid)
        self.append_audit(conn, "alert", _event_summary(stored), actor=source)
        return stored

    async def raw_notification(self, notification_id: int) -> bytes | None:
        def read() -> bytes | None:
            row = self._require().execute("SELECT raw FROM notifications WHERE id=?", (notification_id,)).fetchone()
            return bytes(row[0]) if row else None

        return await self._run(read)

    # -- engine bookkeeping --

    async def undecided_events(self) -> list[tuple[AlertEvent, float]]:
        return await self._run(lambda: self._select_events("decided_at IS NULL", (), "id"))

    async def decided_events(self, since: datetime) -> list[tuple[AlertEvent, datetime]]:
        rows = await self._run(
            lambda: self._select_events("decided_at >= ?", (iso(since),), "decided_at, id", extra="decided_at")
        )
        return [(event, parse_iso(str(extra))) for event, extra in rows]

    def _select_events(
        self, where: str, args: tuple[Any, ...], order: str, extra: str = "received_at"
    ) -> list[tuple[AlertEvent, Any]]:
        sql = (
            f"SELECT id, notification_id, fingerprint, status, starts_at, ends_at, labels, annotations,"
            f" generator_url, {extra}, forced FROM events WHERE {where} ORDER BY {order}"
        )
        return [(_row_event(row), row[9]) for row in self._require().execute(sql, args)]

    @staticmethod
    def mark_decided(conn: sqlite3.Connection, event_ids: Sequence[int], decided_at: datetime) -> None:
        conn.executemany("UPDATE events SET decided_at=? WHERE id=?", [(iso(decided_at), i) for i in event_ids])

    @staticmethod
    def insert_rollback(conn: sqlite3.Connection, record: RollbackRecord) -> None:
        conn.execute(
            "INSERT INTO rollbacks (incident, target, namespace, deployment, ingress, created_at, received_at,"
            " status, dry_run, steps, cites, spec) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.incident,
                record.target,
                record.namespace,
                record.deployment,
                record.ingress,
                record.created_at,
                record.received_at,
                record.status,
                int(record.dry_run),
                canonical(record.steps).decode(),
                canonical(record.cites).decode(),
                canonical(_rollback_spec(record)).decode(),
            ),
        )

    @staticmethod
    def update_rollback(
        conn: sqlite3.Connection,
        incident: str,
        *,
        status: str | None = None,
        step: tuple[str, dict[str, Any]] | None = None,
        cite: Any = None,
    ) -> None:
        row = conn.execute("SELECT steps, cites FROM rollbacks WHERE incident=?", (incident,)).fetchone()
        if row is None:
            return
        steps, cites = orjson.loads(row[0]), orjson.loads(row[1])
        if step is not None:
            steps[step[0]] = step[1]
        if cite is not None:
            cites.append(cite)
        conn.execute(
            "UPDATE rollbacks SET steps=?, cites=?, status=COALESCE(?, status) WHERE incident=?",
            (canonical(steps).decode(), canonical(cites).decode(), status, incident),
        )

    async def rollbacks(self, *, status: str | None = None, incident: str | None = None) -> list[RollbackRecord]:
        def read() -> list[RollbackRecord]:
            sql = "SELECT * FROM rollbacks WHERE (? IS NULL OR status=?) AND (? IS NULL OR incident=?) ORDER BY rowid"
            return [_row_rollback(row) for row in self._require().execute(sql, (status, status, incident, incident))]

        return await self._run(read)

    def record_pause(self, conn: sqlite3.Connection, state: dict[str, Any]) -> None:
        """Persist the kill switch and audit the flip (call inside a write)."""
        conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('pause', ?)", (canonical(state).decode(),))
        kind = "pause" if state["paused"] else "resume"
        self.append_audit(conn, kind, state, actor=str(state["actor"]))

    async def pause_state(self) -> dict[str, Any] | None:
        raw = await self.get_kv("pause")
        return orjson.loads(raw) if raw else None

    async def paused(self) -> str | None:
        """Why the responder is paused (as the core describes it), or None."""
        state = await self.pause_state()
        return _pause_reason(state) if state else None

    async def pause_history(self) -> list[tuple[datetime, str | None]]:
        """Every pause and resume, oldest first, for rebuilding the core's view of time."""

        def read() -> list[tuple[datetime, str | None]]:
            sql = "SELECT data FROM audit WHERE kind IN ('pause', 'resume') ORDER BY seq"
            states = [orjson.loads(row[0]) for row in self._require().execute(sql)]
            return [(parse_iso(state["at"]), _pause_reason(state)) for state in states]

        return await self._run(read)

    async def latest_rollback(self, target: str) -> RollbackRecord | None:
        def read() -> RollbackRecord | None:
            sql = "SELECT * FROM rollbacks WHERE target=? ORDER BY created_at DESC, rowid DESC LIMIT 1"
            row = self._require().execute(sql, (target,)).fetchone()
            return _row_rollback(row) if row else None

        return await self._run(read)

    async def get_kv(self, key: str) -> str | None:
        def read() -> str | None:
            row = self._require().execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
            return str(row[0]) if row else None

        return await self._run(read)

    async def probe(self) -> None:
        """A real write through the batcher: fails with StoreUnavailable when the disk or file is not writable."""
        await self.write(
            lambda conn: conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('probe', ?)", (str(time.time()),))
        )

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``fn(conn)`` on the store's thread (sees everything committed so far)."""
        return await self._run(lambda: fn(self._require()))

    # -- notification outbox (the write functions run inside a transaction) --

    @staticmethod
    def insert_outbox(
        conn: sqlite3.Connection,
        *,
        incident: str,
        kind: str,
        target: str | None,
        data: dict[str, Any],
        now: float,
        state: str = "pending",
        fingerprints: Sequence[str] = (),
    ) -> int:
        """Queue one notification; the first for an incident is its message, later ones are follow-ups."""
        first = conn.execute("SELECT 1 FROM outbox WHERE incident=? LIMIT 1", (incident,)).fetchone() is None
        cursor = conn.execute(
            "INSERT INTO outbox (incident, kind, role, target, data, created_at, state, next_attempt_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (incident, kind, "incident" if first else "followup", target, canonical(data).decode(), now, state, now),
        )
        conn.executemany(
            "INSERT OR REPLACE INTO outbox_alerts (fingerprint, incident) VALUES (?,?)",
            [(fp, incident) for fp in fingerprints],
        )
        return int(cursor.lastrowid or 0)

    @staticmethod
    def incident_for_alert(conn: sqlite3.Connection, fingerprint: str) -> str | None:
        row = conn.execute("SELECT incident FROM outbox_alerts WHERE fingerprint=?", (fingerprint,)).fetchone()
        return str(row[0]) if row else None

    @staticmethod
    def claim_outbox(conn: sqlite3.Connection, *, now: float, limit: int = 20) -> list[OutboxRow]:
        """Due pending rows, oldest first, skipping any whose incident has an earlier undelivered row (a
        thread reply needs its parent's ``ts``). A claimed row stays pending until finished, so a crash
        between sending and recording it means it is sent again after the restart (at-least-once)."""
        rows = conn.execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox AS o WHERE state='pending' AND next_attempt_at <= ? AND NOT"
            " EXISTS (SELECT 1 FROM outbox AS e WHERE e.incident = o.incident AND e.id < o.id AND"
            " e.state = 'pending') ORDER BY id LIMIT ?",
            (now, limit),
        ).fetchall()
        conn.executemany("UPDATE outbox SET claimed_at=? WHERE id=?", [(now, row[0]) for row in rows])
        return [_row_outbox(row) for row in rows]

    @staticmethod
    def finish_outbox(
        conn: sqlite3.Connection,
        row_id: int,
        *,
        state: str,
        now: float,
        retry_at: float | None = None,
        error: str | None = None,
    ) -> None:
        """Record one delivery attempt: ``delivered``, ``pending`` again (with ``retry_at``) or ``failed``."""
        conn.execute(
            "UPDATE outbox SET state=?, attempts=attempts+1, next_attempt_at=COALESCE(?, next_attempt_at),"
            " delivered_at=CASE WHEN ?='delivered' THEN ? ELSE delivered_at END, last_error=? WHERE id=?",
            (state, retry_at, state, now, error, row_id),
        )

    @staticmethod
    def note_incident(
        conn: sqlite3.Connection,
        incident: str,
        *,
        channel: str | None = None,
        ts: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Remember the Slack message of an incident (for thread replies) and the metrics it showed."""
        conn.execute(
            "INSERT INTO incident_notes (incident, channel, ts, metrics) VALUES (?,?,?,?) ON CONFLICT (incident)"
            " DO UPDATE SET channel=COALESCE(excluded.channel, channel), ts=COALESCE(excluded.ts, ts),"
            " metrics=COALESCE(excluded.metrics, metrics)",
            (incident, channel, ts, canonical(metrics).decode() if metrics is not None else None),
        )

    @staticmethod
    def outbox_backlog(conn: sqlite3.Connection) -> tuple[int, float | None]:
        """(rows waiting to be delivered, creation time of the oldest of them)."""
        row = conn.execute("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state='pending'").fetchone()
        return int(row[0]), row[1]

    @staticmethod
    def next_outbox_due(conn: sqlite3.Connection) -> float | None:
        row = conn.execute("SELECT MIN(next_attempt_at) FROM outbox WHERE state='pending'").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    @staticmethod
    def outbox_rows(conn: sqlite3.Connection, incident: str) -> list[OutboxRow]:
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE incident=? ORDER BY id"
        return [_row_outbox(row) for row in conn.execute(sql, (incident,))]

    @staticmethod
    def incident_note(conn: sqlite3.Connection, incident: str) -> dict[str, Any]:
        row = conn.execute("SELECT channel, ts, metrics FROM incident_notes WHERE incident=?", (incident,)).fetchone()
        if row is None:
            return {}
        return {"channel": row[0], "ts": row[1], "metrics": orjson.loads(row[2]) if row[2] else None}

    @staticmethod
    def event_facts(conn: sqlite3.Connection, event_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Stored alert events as plain data (what notifications and incident reports cite)."""
        marks = ",".join("?" * len(event_ids))
        sql = (
            "SELECT id, notification_id, fingerprint, status, starts_at, ends_at, labels, annotations,"
            f" generator_url FROM events WHERE id IN ({marks}) ORDER BY id"
        )
        keys = ("event_id", "notification_id", "fingerprint", "status", "starts_at", "ends_at")
        return [
            {
                **dict(zip(keys, row[:6], strict=True)),
                "labels": orjson.loads(row[6]),
                "annotations": orjson.loads(row[7]),
                "generator_url": row[8],
            }
            for row in conn.execute(sql, tuple(event_ids))
        ]

    # -- reading the audit log --

    async def audit_entries(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        target: str | None = None,
        kind: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[AuditEntry]:
        return await self._run(
            lambda: list(
                read_audit(
                    self._require(), after=after, limit=limit, target=target, kind=kind, since=since, until=until
                )
            )
        )

    async def verify(self) -> VerifyReport:
        return await self._run(lambda: verify_chain(self._require(), self._key))


def read_audit(
    conn: sqlite3.Connection,
    *,
    after: int = 0,
    limit: int = 100,
    target: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
    newest_first: bool = False,
) -> Iterator[AuditEntry]:
    """Entries after seq ``after``, filtered by target, kind and an ISO-8601 UTC time range [since, until)."""
    order = "DESC" if newest_first else "ASC"
    sql = (
        f"SELECT seq, ts, kind, target, actor, data, prev, hash FROM audit WHERE seq > ?"
        f" AND (? IS NULL OR target = ?) AND (? IS NULL OR kind = ?)"
        f" AND (? IS NULL OR ts >= ?) AND (? IS NULL OR ts < ?) ORDER BY seq {order} LIMIT ?"
    )
    args = (after, target, target, kind, kind, since, since, until, until, limit)
    for row in conn.execute(sql, args):
        yield AuditEntry(row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5]), row[6], row[7])


def verify_chain(conn: sqlite3.Connection, key: bytes | None) -> VerifyReport:
    """Recompute the chain: any edited, deleted, inserted or reordered entry, or edited raw notification, fails."""
    problems: list[str] = []
    prev, expected_seq = GENESIS, 1
    raw_hashes = dict(conn.execute("SELECT id, sha256 FROM notifications"))
    for row in conn.execute("SELECT seq, ts, kind, target, actor, data, prev, hash FROM audit ORDER BY seq"):
        entry = AuditEntry(row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5]), row[6], row[7])
        problems.extend(_check_entry(entry, expected_seq, prev, key))
        if entry.kind == "receipt":
            problems.extend(_check_receipt(conn, entry, raw_hashes))
        prev, expected_seq = entry.hash, entry.seq + 1
        if len(problems) > 20:
            break
    return VerifyReport(ok=not problems, length=expected_seq - 1, head=prev, problems=problems)


def _check_entry(entry: AuditEntry, expected_seq: int, prev: str, key: bytes | None) -> list[str]:
    problems = []
    if entry.seq != expected_seq:
        problems.append(f"entry {entry.seq}: expected seq {expected_seq} (entries deleted or reordered)")
    if entry.prev != prev:
        problems.append(f"entry {entry.seq}: previous-hash link broken")
    if entry_hash(entry.prev, entry.body(), key) != entry.hash:
        problems.append(f"entry {entry.seq}: content does not match its hash (modified)")
    return problems


def _check_receipt(conn: sqlite3.Connection, entry: AuditEntry, raw_hashes: dict[int, str]) -> list[str]:
    nid = entry.data.get("notification_id")
    if not isinstance(nid, int) or nid not in raw_hashes:
        return [f"entry {entry.seq}: notification {nid} is missing"]
    row = conn.execute("SELECT raw FROM notifications WHERE id=?", (nid,)).fetchone()
    actual = hashlib.sha256(bytes(row[0])).hexdigest()
    if actual != entry.data.get("sha256") or actual != raw_hashes[nid]:
        return [f"entry {entry.seq}: raw notification {nid} was modified"]
    return []


@contextmanager
def open_readonly(path: Path) -> Iterator[sqlite3.Connection]:
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def _with_ids(event: AlertEvent, *, event_id: int, notification_id: int) -> AlertEvent:
    return dataclasses.replace(event, event_id=event_id, notification_id=notification_id)


def _event_summary(event: AlertEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "notification_id": event.notification_id,
        "fingerprint": event.fingerprint,
        "status": event.status.value,
        "starts_at": iso(event.starts_at),
        "ends_at": iso(event.ends_at) if event.ends_at else None,
        "alertname": event.alertname,
        "labels": dict(event.labels),
        **({"forced": True} if event.forced else {}),
    }


def _row_event(row: Sequence[Any]) -> AlertEvent:
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


def _row_outbox(row: Sequence[Any]) -> OutboxRow:
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
    )


def _pause_reason(state: dict[str, Any]) -> str | None:
    return f"by {state['actor']}: {state['reason']}" if state.get("paused") else None


def _rollback_spec(record: RollbackRecord) -> dict[str, Any]:
    spec = {"cluster": record.cluster, "httproute": record.httproute, "canary_backend": record.canary_backend}
    return {key: value for key, value in spec.items() if value}


def _row_rollback(row: Sequence[Any]) -> RollbackRecord:
    spec = orjson.loads(row[11]) if len(row) > 11 and row[11] else {}
    return RollbackRecord(
        incident=row[0],
        target=row[1],
        namespace=row[2],
        deployment=row[3],
        ingress=row[4],
        created_at=row[5],
        received_at=row[6],
        status=row[7],
        dry_run=bool(row[8]),
        steps=orjson.loads(row[9]),
        cites=orjson.loads(row[10]),
        cluster=str(spec.get("cluster") or ""),
        httproute=spec.get("httproute"),
        canary_backend=spec.get("canary_backend"),
    )
