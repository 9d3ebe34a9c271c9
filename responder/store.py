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
import hashlib
import hmac
import sqlite3
import threading
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
    generator_url TEXT NOT NULL, received_at REAL NOT NULL, decided_at TEXT
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
    dry_run INTEGER NOT NULL, steps TEXT NOT NULL DEFAULT '{}', cites TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


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
        self._queue: asyncio.Queue[tuple[Write, asyncio.Future[Any]]] = asyncio.Queue()
        self._batcher: asyncio.Task[None] | None = None
        self._thread_id: int | None = None
        self.commits = 0

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
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self._chain = _Chain(row[0], row[1]) if row else _Chain()
        self._conn = conn
        self._thread_id = threading.get_ident()

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # -- group commit --

    async def write(self, fn: Write) -> Any:
        """Run ``fn(conn)`` in the next transaction; return its result once committed."""
        return await self.submit(fn)

    def submit(self, fn: Write) -> asyncio.Future[Any]:
        """Queue ``fn(conn)`` for the next transaction now (keeping the order of calls); the future resolves
        once it is committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((fn, future))
        return future

    async def _batch_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self._max_batch:
                batch.append(self._queue.get_nowait())
            try:
                results, entries = await asyncio.get_running_loop().run_in_executor(self._executor, self._commit, batch)
            except StoreUnavailable as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreUnavailable(str(exc)))
                continue
            self.commits += 1
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
            " generator_url, received_at) VALUES (?,?,?,?,?,?,?,?,?)",
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
            f" generator_url, {extra} FROM events WHERE {where} ORDER BY {order}"
        )
        return [(_row_event(row), row[9]) for row in self._require().execute(sql, args)]

    @staticmethod
    def mark_decided(conn: sqlite3.Connection, event_ids: Sequence[int], decided_at: datetime) -> None:
        conn.executemany("UPDATE events SET decided_at=? WHERE id=?", [(iso(decided_at), i) for i in event_ids])

    @staticmethod
    def insert_rollback(conn: sqlite3.Connection, record: RollbackRecord) -> None:
        conn.execute(
            "INSERT INTO rollbacks (incident, target, namespace, deployment, ingress, created_at, received_at,"
            " status, dry_run, steps, cites) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
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

    # -- reading the audit log --

    async def audit_entries(
        self, *, after: int = 0, limit: int = 100, target: str | None = None, kind: str | None = None
    ) -> list[AuditEntry]:
        return await self._run(
            lambda: list(read_audit(self._require(), after=after, limit=limit, target=target, kind=kind))
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
    newest_first: bool = False,
) -> Iterator[AuditEntry]:
    order = "DESC" if newest_first else "ASC"
    sql = (
        f"SELECT seq, ts, kind, target, actor, data, prev, hash FROM audit WHERE seq > ? AND (? IS NULL OR"
        f" target = ?) AND (? IS NULL OR kind = ?) ORDER BY seq {order} LIMIT ?"
    )
    for row in conn.execute(sql, (after, target, target, kind, kind, limit)):
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
    return AlertEvent(
        fingerprint=event.fingerprint,
        status=event.status,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        labels=event.labels,
        annotations=event.annotations,
        generator_url=event.generator_url,
        event_id=event_id,
        notification_id=notification_id,
    )


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
    )


def _row_rollback(row: Sequence[Any]) -> RollbackRecord:
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
    )
