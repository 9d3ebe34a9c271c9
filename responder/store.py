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
CREATE TABLE IF NOT EXISTS core_log (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
    recorded INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS core_log_at ON core_log (at);
"""
SCHEMA_VERSION = 2  # PRAGMA user_version; see _migrate


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older database up to SCHEMA_VERSION, one numbered step at a time, in one transaction.

    1: columns added after the first release (CREATE TABLE IF NOT EXISTS does not add them);
    2: the core input log (``core_log``), back-filled from the decided events and the pause history so that a
       database written by an older version rebuilds the same decision state it had."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version < 1:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
            if "forced" not in columns:
                conn.execute("ALTER TABLE events ADD COLUMN forced INTEGER NOT NULL DEFAULT 0")
            rollback_columns = {row[1] for row in conn.execute("PRAGMA table_info(rollbacks)")}
            if "spec" not in rollback_columns:  # the target's cluster and HTTPRoute (multi-cluster, Gateway API)
                conn.execute("ALTER TABLE rollbacks ADD COLUMN spec TEXT NOT NULL DEFAULT '{}'")
        if version < 2:
            _backfill_core_log(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _backfill_core_log(conn: sqlite3.Connection) -> None:
    """Older versions rebuilt their state from the events' decided_at and the pause/resume audit entries: write
    those, in the same order, as core inputs (one batch per decided_at, a pause input per flip)."""
    if conn.execute("SELECT 1 FROM core_log LIMIT 1").fetchone():
        return
    inputs: list[tuple[str, int, str, dict[str, Any]]] = []
    batches: dict[str, list[int]] = {}
    for event_id, decided_at in conn.execute(
        "SELECT id, decided_at FROM events WHERE decided_at IS NOT NULL ORDER BY decided_at, id"
    ):
        batches.setdefault(str(decided_at), []).append(int(event_id))
    inputs += [(at, 1, "batch", {"events": ids}) for at, ids in batches.items()]
    for (data,) in conn.execute("SELECT data FROM audit WHERE kind IN ('pause', 'resume') ORDER BY seq"):
        try:
            state = orjson.loads(data)
            inputs.append((iso(parse_iso(str(state["at"]))), 0, "pause", {"why": _pause_reason(state)}))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a damaged entry (audit verify reports it); the pause state itself comes from kv at start
    inputs.sort(key=lambda item: (item[0], item[1]))  # a pause at the same instant applied before the batch
    conn.executemany(
        "INSERT INTO core_log (at, kind, data) VALUES (?,?,?)",
        [(at, kind, canonical(data).decode()) for at, _, kind, data in inputs],
    )


class StoreUnavailable(Exception):
    """The database cannot be written (disk full, read-only, locked): callers answer 503 and retry later."""


class WriteRejected(Exception):
    """One write function failed on its own data (a value SQLite cannot store, a bug in the function): that
    write alone is rolled back and fails with this error; the rest of its group commit is unaffected."""


# Failures of the database itself (the whole transaction is lost); any other exception raised by a write function
# is that write's own problem. OverflowError, ValueError, TypeError, IntegrityError ... belong to the second kind.
_STORAGE_ERRORS = (sqlite3.OperationalError, sqlite3.DatabaseError, OSError, MemoryError)
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError)


class _PoisonWrite(Exception):
    """Internal: a write raised on its own data; the batch is run again with each write isolated."""


@dataclass(frozen=True, slots=True)
class _Rejected:
    message: str


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
class CoreInput:
    """One recorded input of the decision core, in the order the core saw it (``seq``).

    kinds: ``batch`` (a tick at ``at``, then ``data["events"]`` in order), ``pause`` (``data["why"]``, None to
    resume), ``live`` (a restored target, ``data["target"]``), ``result`` (a rollback's final status:
    ``data["incident"]``, ``data["target"]``, ``data["status"]``, ``data["changed"]``)."""

    seq: int
    at: datetime
    kind: str
    data: dict[str, Any]
    recorded: bool = True  # batch: False while only its acting decisions are on disk (the rest follows)


@dataclass(slots=True)
class WriteHealth:
    """What the last writes said about the database. A tiny probe write may succeed on a full disk while a
    notification does not fit, so /readyz also fails while the latest notification could not be stored."""

    last_ok: float = 0.0
    last_failure: float = 0.0
    failure: str = ""
    ingest_last_ok: float = 0.0
    ingest_last_failure: float = 0.0
    ingest_failure: str = ""
    ingest_failed_size: int = 0  # about how much the failed notification needed

    def ingest_ok(self) -> None:
        self.ingest_last_ok = time.monotonic()

    def ingest_failed(self, why: str, *, size: int) -> None:
        self.ingest_last_failure, self.ingest_failure, self.ingest_failed_size = time.monotonic(), why, size

    def problem(self) -> str | None:
        """Why the inbox cannot be trusted to take notifications now, or None."""
        if self.ingest_last_failure > self.ingest_last_ok:
            return f"the last notification could not be stored: {self.ingest_failure}"
        if self.last_failure > self.last_ok:
            return f"the last write failed: {self.failure}"
        return None


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
    retrying: bool = False  # failed, and retried while its alerts fire
    attempts: int = 0  # retries started after the first run


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
        self.health = WriteHealth()
        self.on_crash: Callable[[str, BaseException], None] | None = None  # the supervisor's hook (logs, counts)

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
        """The one writer. Whatever happens to one batch, its callers get an answer and the loop goes on: a
        storage failure fails the batch (StoreUnavailable), a write with bad data fails alone (WriteRejected),
        and anything unexpected is reported to the supervisor hook and fails the batch, never the loop."""
        while True:
            await self._ready.wait()
            batch = self._next_batch()
            try:
                outcomes, entries = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._commit, batch
                )
            except StoreUnavailable as exc:
                self._settle_failed(batch, StoreUnavailable(str(exc)), str(exc))
                continue
            except Exception as exc:  # a bug in the store itself: loud, and the callers are not left hanging
                if self.on_crash is not None:
                    self.on_crash("store-writer", exc)
                self._settle_failed(batch, StoreUnavailable(f"internal store error: {type(exc).__name__}"), str(exc))
                continue
            self.health.last_ok = time.monotonic()
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, _Rejected):
                    future.set_exception(WriteRejected(outcome.message))
                else:
                    future.set_result(outcome)
            self._emit(entries)

    def _settle_failed(self, batch: Sequence[tuple[Write, asyncio.Future[Any]]], exc: Exception, why: str) -> None:
        self.health.last_failure, self.health.failure = time.monotonic(), why
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)

    def _commit(self, batch: Sequence[tuple[Write, asyncio.Future[Any]]]) -> tuple[list[Any], list[AuditEntry]]:
        """Run the batch in one transaction. If a write raises on its own data, the transaction is rolled back
        and the batch runs again with each write in a savepoint, so only the bad write is lost (and reported)."""
        try:
            return self._transaction(batch, isolate=False)
        except _PoisonWrite:
            return self._transaction(batch, isolate=True)

    def _transaction(
        self, batch: Sequence[tuple[Write, asyncio.Future[Any]]], *, isolate: bool
    ) -> tuple[list[Any], list[AuditEntry]]:
        conn = self._require()
        saved = (self._chain.seq, self._chain.hash)
        self._chain.written = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [self._run_isolated(conn, fn) if isolate else self._run_plain(fn, conn) for fn, _ in batch]
            conn.execute("COMMIT")
        except BaseException as exc:
            self._chain.seq, self._chain.hash = saved
            self._chain.written = []
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, _STORAGE_ERRORS) and not isinstance(exc, _DATA_ERRORS):
                raise StoreUnavailable(f"database write failed: {exc}") from exc
            raise
        return results, self._chain.written

    @staticmethod
    def _run_plain(fn: Write, conn: sqlite3.Connection) -> Any:
        try:
            return fn(conn)
        except _STORAGE_ERRORS as exc:
            if isinstance(exc, _DATA_ERRORS):
                raise _PoisonWrite from exc
            raise
        except Exception as exc:
            raise _PoisonWrite from exc

    def _run_isolated(self, conn: sqlite3.Connection, fn: Write) -> Any:
        head = (self._chain.seq, self._chain.hash, len(self._chain.written))
        conn.execute("SAVEPOINT one_write")
        try:
            result = fn(conn)
        except Exception as exc:
            if isinstance(exc, _STORAGE_ERRORS) and not isinstance(exc, _DATA_ERRORS):
                raise
            conn.execute("ROLLBACK TO one_write")
            conn.execute("RELEASE one_write")
            self._chain.seq, self._chain.hash = head[0], head[1]
            del self._chain.written[head[2] :]
            return _Rejected(f"{type(exc).__name__}: {exc}"[:500])
        conn.execute("RELEASE one_write")
        return result

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
        try:
            stored: list[AlertEvent] = await self.write(
                lambda conn: self._ingest(conn, raw, events, meta, received_at, truncated, source)
            )
        except (StoreUnavailable, WriteRejected) as exc:
            self.health.ingest_failed(str(exc), size=len(raw) * 3 + 4096)  # raw body, parsed events, audit copy
            raise
        self.health.ingest_ok()
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

    async def events_by_ids(self, event_ids: Sequence[int]) -> dict[int, AlertEvent]:
        def read() -> dict[int, AlertEvent]:
            found: dict[int, AlertEvent] = {}
            for start in range(0, len(event_ids), 500):
                chunk = tuple(event_ids[start : start + 500])
                where = f"id IN ({','.join('?' * len(chunk))})"
                found.update((event.event_id, event) for event, _ in self._select_events(where, chunk, "id"))
            return found

        return await self._run(read)

    # -- the decision core's inputs, in the order it saw them (rebuilt on start) --

    @staticmethod
    def append_core_input(conn: sqlite3.Connection, item: CoreInput) -> None:
        conn.execute(
            "INSERT INTO core_log (seq, at, kind, data, recorded) VALUES (?,?,?,?,?)",
            (item.seq, iso(item.at), item.kind, canonical(item.data).decode(), int(item.recorded)),
        )

    @staticmethod
    def mark_input_recorded(conn: sqlite3.Connection, seq: int) -> None:
        conn.execute("UPDATE core_log SET recorded=1 WHERE seq=?", (seq,))

    async def core_inputs(self, since: datetime) -> list[CoreInput]:
        def read() -> list[CoreInput]:
            sql = "SELECT seq, at, kind, data, recorded FROM core_log WHERE at >= ? ORDER BY seq"
            return [
                CoreInput(int(r[0]), parse_iso(str(r[1])), str(r[2]), orjson.loads(r[3]), bool(r[4]))
                for r in self._require().execute(sql, (iso(since),))
            ]

        return await self._run(read)

    async def oldest_retrying(self) -> datetime | None:
        """When the oldest rollback still retried (failed, its alerts firing) was decided, if there is one."""

        def read() -> str | None:
            sql = "SELECT min(created_at) FROM rollbacks WHERE json_extract(spec, '$.retrying')"
            row = self._require().execute(sql).fetchone()
            return str(row[0]) if row and row[0] else None

        found = await self._run(read)
        return parse_iso(found) if found else None

    async def last_core_seq(self) -> int:
        def read() -> int:
            return int(self._require().execute("SELECT coalesce(max(seq), 0) FROM core_log").fetchone()[0])

        return await self._run(read)

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
        spec: dict[str, Any] | None = None,
    ) -> None:
        """Change one rollback row: its status, one step's record, one more cited alert, spec fields (merged)."""
        row = conn.execute("SELECT steps, cites, spec FROM rollbacks WHERE incident=?", (incident,)).fetchone()
        if row is None:
            return
        steps, cites, stored = orjson.loads(row[0]), orjson.loads(row[1]), orjson.loads(row[2] or "{}")
        if step is not None:
            steps[step[0]] = step[1]
        if cite is not None:
            cites.append(cite)
        if spec is not None:
            stored.update(spec)
        conn.execute(
            "UPDATE rollbacks SET steps=?, cites=?, spec=?, status=COALESCE(?, status) WHERE incident=?",
            (canonical(steps).decode(), canonical(cites).decode(), canonical(stored).decode(), status, incident),
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

    async def rollbacks_since_restore(self, target: str) -> list[RollbackRecord]:
        """The target's rollbacks since its last restore, newest first (what a restore undoes, together)."""

        def read() -> list[RollbackRecord]:
            sql = "SELECT * FROM rollbacks WHERE target=? ORDER BY created_at DESC, rowid DESC"
            found: list[RollbackRecord] = []
            for row in self._require().execute(sql, (target,)):
                record = _row_rollback(row)
                if record.status == "restored":
                    break
                found.append(record)
            return found

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
        """Real writes through the batcher: fail with StoreUnavailable when the disk or file is not writable.

        The probe is as large as the last notification that could not be stored (at least 4 KiB), committed, then
        removed: a tiny write may still fit on a full disk. Its success clears that failure, so a replica that
        cannot receive notifications while not ready still becomes ready again once space is back."""
        size = max(4096, self.health.ingest_failed_size if self.health.ingest_last_failure else 0)
        blob = b"\0" * size
        await self.write(
            lambda conn: conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('probe', ?)", (blob,))
        )
        await self.write(lambda conn: conn.execute("DELETE FROM kv WHERE key='probe'"))
        self.health.ingest_ok()

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

    async def verify(self, *, expect_length: int | None = None, expect_head: str | None = None) -> VerifyReport:
        return await self._run(
            lambda: verify_chain(self._require(), self._key, expect_length=expect_length, expect_head=expect_head)
        )


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


_MAX_PROBLEMS = 20  # a wrong key or a rewritten chain flags every entry; the first ones tell the story


def verify_chain(
    conn: sqlite3.Connection, key: bytes | None, *, expect_length: int | None = None, expect_head: str | None = None
) -> VerifyReport:
    """Recompute the chain: any edited, deleted, inserted or reordered entry, or edited raw notification, fails.

    Deleting the last entries leaves a shorter chain that is still valid; only a head kept elsewhere (status,
    metrics, the stdout copy) reveals it, so ``expect_length`` and ``expect_head`` are checked too when given.
    """
    problems: list[str] = []
    more, prev, length = 0, GENESIS, 0
    raw_hashes = dict(conn.execute("SELECT id, sha256 FROM notifications"))
    for row in conn.execute("SELECT seq, ts, kind, target, actor, data, prev, hash FROM audit ORDER BY seq"):
        found = _check_row(conn, row, expected_seq=length + 1, prev=prev, key=key, raw_hashes=raw_hashes)
        room = max(0, _MAX_PROBLEMS - len(problems))
        problems, more = problems + found[:room], more + len(found[room:])
        prev, length = str(row[7]), int(row[0])  # walk on to the end: length and head are the real ones
    if more:
        problems.append(f"... and {more} more problems")
    problems.extend(check_expected_head(conn, length=expect_length, head=expect_head))
    return VerifyReport(ok=not problems, length=length, head=prev, problems=problems)


def _check_row(
    conn: sqlite3.Connection,
    row: Sequence[Any],
    *,
    expected_seq: int,
    prev: str,
    key: bytes | None,
    raw_hashes: dict[int, str],
) -> list[str]:
    entry = _row_entry(row)
    if entry is None:
        return [f"entry {row[0]}: not a well-formed entry (modified)"]
    problems = _check_entry(entry, expected_seq, prev, key)
    if entry.kind == "receipt":
        problems.extend(_check_receipt(conn, entry, raw_hashes))
    return problems


def _row_entry(row: Sequence[Any]) -> AuditEntry | None:
    """None for a row no writer produces (a column of another type, data that is not a JSON object): an edited
    file must give a report, not a crash of verify."""
    if not all(isinstance(row[i], str) for i in (1, 2, 4, 6, 7)) or not isinstance(row[3], str | None):
        return None
    try:
        data = orjson.loads(row[5])
    except (orjson.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    return AuditEntry(row[0], row[1], row[2], row[3], row[4], data, row[6], row[7])


def check_expected_head(conn: sqlite3.Connection, *, length: int | None, head: str | None) -> list[str]:
    """A head seen earlier must still be in the chain: entry ``length`` exists and, with ``head``, has that hash
    (without ``length``, some entry has it). Key-independent: the stored hashes are checked by :func:`verify_chain`.
    """
    if length is None:
        return [] if head is None else _check_head_anywhere(conn, head.lower())
    actual = GENESIS if length == 0 else _hash_at(conn, length)
    if actual is None:
        last = conn.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0]
        return [f"entry {length}: missing, the chain ends at entry {last} (the tail was truncated)"]
    if head is not None and actual != head.lower():
        return [f"entry {length}: hash {actual} is not the expected head {head.lower()} (truncated and rewritten)"]
    return []


def _hash_at(conn: sqlite3.Connection, seq: int) -> str | None:
    row = conn.execute("SELECT hash FROM audit WHERE seq=?", (seq,)).fetchone()
    return str(row[0]) if row else None


def _check_head_anywhere(conn: sqlite3.Connection, head: str) -> list[str]:
    if head == GENESIS or conn.execute("SELECT 1 FROM audit WHERE hash=? LIMIT 1", (head,)).fetchone():
        return []
    last = conn.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0]
    return [f"expected head {head}: not in the chain (ends at entry {last}; the tail was truncated or rewritten)"]


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
    raw = conn.execute("SELECT raw FROM notifications WHERE id=?", (nid,)).fetchone()[0]
    actual = hashlib.sha256(raw if isinstance(raw, bytes) else str(raw).encode()).hexdigest()  # TEXT if edited
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
    spec = {
        "cluster": record.cluster,
        "httproute": record.httproute,
        "canary_backend": record.canary_backend,
        "retrying": record.retrying,
        "attempts": record.attempts,
    }
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
        retrying=bool(spec.get("retrying")),
        attempts=int(spec.get("attempts") or 0),
    )
