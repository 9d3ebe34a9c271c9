"""The one SQLite writer: a dedicated thread, one connection (WAL, synchronous=FULL), group commit.

Every write is a small function of a transaction (:class:`responder.store.port.Tx`) queued to a batcher task that
runs everything queued in one transaction and one commit: under load many webhooks share one fsync, and each
caller's future resolves only after its rows are durable. Two lanes: urgent writes (rollback intents, write-ahead
records) go into a transaction of their own, ahead of whatever else waits, so a storm's bulk records never stand
between an alert and its rollback; within each lane the order of calls is kept.

Whatever happens, the callers get an answer and the writer goes on:
- a storage failure (disk full, read-only, locked) fails the whole batch with StoreUnavailable, and the in-memory
  audit head is rolled back with it, so the chain stays contiguous;
- a write that raises on its own data (a value SQLite cannot store, a bug) makes the batch run again with each
  write in a savepoint: that write alone fails (WriteRejected), the others commit;
- a bug in the writer itself is reported to ``on_crash`` and fails only its batch.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from responder.store.chain import GENESIS
from responder.store.records import AuditEntry, StoreUnavailable, WriteHealth, WriteRejected
from responder.store.sqlite import schema
from responder.store.sqlite.tx import SqliteReader, SqliteTx

T = TypeVar("T")
Write = Callable[[SqliteTx], Any]
Queued = tuple[Write, "asyncio.Future[Any]"]

# Failures of the database itself (the whole transaction is lost); any other exception raised by a write function
# is that write's own problem. OverflowError, ValueError, TypeError, IntegrityError ... belong to the second kind.
_STORAGE_ERRORS = (sqlite3.OperationalError, sqlite3.DatabaseError, OSError, MemoryError)
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError)


@dataclass(slots=True)
class Chain:
    """The audit head; advanced inside a transaction, rolled back with it."""

    seq: int = 0
    hash: str = GENESIS
    written: list[AuditEntry] = field(default_factory=list)


class _PoisonWrite(Exception):
    """A write raised on its own data; the batch is run again with each write isolated."""


@dataclass(frozen=True, slots=True)
class _Rejected:
    message: str


class Writer:
    def __init__(self, path: Path, *, key: bytes | None, emit: Callable[[list[AuditEntry]], None]) -> None:
        self.path = path
        self.key = key
        self.chain = Chain()
        self.health = WriteHealth()
        self.on_crash: Callable[[str, BaseException], None] | None = None
        self._emit = emit
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None
        self._urgent: collections.deque[Queued] = collections.deque()
        self._normal: collections.deque[Queued] = collections.deque()
        self._ready = asyncio.Event()
        self._batcher: asyncio.Task[None] | None = None
        self.max_batch = 512

    # -- lifecycle --

    async def open(self) -> None:
        await self.run(self._connect)
        self._batcher = asyncio.create_task(self._batch_loop(), name="store-batcher")

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
            await asyncio.gather(self._batcher, return_exceptions=True)
            self._batcher = None
        await self.run(self._disconnect)
        self._executor.shutdown(wait=True)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=2000")
        schema.create(conn)
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self.chain = Chain(row[0], row[1]) if row else Chain()
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the store's thread (after the commit in progress, if any)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable("database is closed")
        return self._conn

    def reader(self) -> SqliteReader:
        return SqliteReader(self.connection())

    # -- group commit --

    def submit(self, fn: Write, *, urgent: bool = False) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._normal).append((fn, future))
        self._ready.set()
        return future

    def _next_batch(self) -> list[Queued]:
        lane = self._urgent if self._urgent else self._normal
        batch = [lane.popleft() for _ in range(min(len(lane), self.max_batch))]
        if not self._urgent and not self._normal:
            self._ready.clear()
        return batch

    async def _batch_loop(self) -> None:
        while True:
            await self._ready.wait()
            batch = self._next_batch()
            try:
                outcomes, entries = await self.run(functools.partial(self._commit, batch))
            except StoreUnavailable as exc:
                self._settle_failed(batch, StoreUnavailable(str(exc)), str(exc))
                continue
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # a bug in the store itself: loud, and the callers are not left hanging
                if self.on_crash is not None:
                    self.on_crash("store-writer", exc)
                self._settle_failed(batch, StoreUnavailable(f"internal store error: {type(exc).__name__}"), str(exc))
                continue
            self.health.wrote()
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, _Rejected):
                    future.set_exception(WriteRejected(outcome.message))
                else:
                    future.set_result(outcome)
            if entries:
                self._emit(entries)

    def _settle_failed(self, batch: Sequence[Queued], exc: Exception, why: str) -> None:
        self.health.failed(why)
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)

    def _commit(self, batch: Sequence[Queued]) -> tuple[list[Any], list[AuditEntry]]:
        try:
            return self._transaction(batch, isolate=False)
        except _PoisonWrite:
            return self._transaction(batch, isolate=True)

    def _transaction(self, batch: Sequence[Queued], *, isolate: bool) -> tuple[list[Any], list[AuditEntry]]:
        conn = self.connection()
        saved = (self.chain.seq, self.chain.hash)
        self.chain.written = []
        tx = SqliteTx(conn, self.chain, self.key)
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [self._run_isolated(conn, tx, fn) if isolate else _run_plain(fn, tx) for fn, _ in batch]
            conn.execute("COMMIT")
        except BaseException as exc:
            self.chain.seq, self.chain.hash = saved
            self.chain.written = []
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if _is_storage_failure(exc):
                raise StoreUnavailable(f"database write failed: {exc}") from exc
            raise
        return results, self.chain.written

    def _run_isolated(self, conn: sqlite3.Connection, tx: SqliteTx, fn: Write) -> Any:
        head = (self.chain.seq, self.chain.hash, len(self.chain.written))
        conn.execute("SAVEPOINT one_write")
        try:
            result = fn(tx)
        except Exception as exc:
            if _is_storage_failure(exc):
                raise
            conn.execute("ROLLBACK TO one_write")
            conn.execute("RELEASE one_write")
            self.chain.seq, self.chain.hash = head[0], head[1]
            del self.chain.written[head[2] :]
            return _Rejected(f"{type(exc).__name__}: {exc}"[:500])
        conn.execute("RELEASE one_write")
        return result


def _is_storage_failure(exc: BaseException) -> bool:
    return isinstance(exc, _STORAGE_ERRORS) and not isinstance(exc, _DATA_ERRORS)


def _run_plain(fn: Write, tx: SqliteTx) -> Any:
    try:
        return fn(tx)
    except Exception as exc:
        if _is_storage_failure(exc):
            raise
        raise _PoisonWrite from exc
