"""The one writer of both backends: a dedicated thread, one connection, group commit.

Every write is a small function of a transaction (:class:`responder.store.port.Tx`) queued to a batcher task that
runs everything queued in one transaction and one commit: under load many webhooks share one fsync, and each
caller's future resolves only after its rows are durable. Two lanes: urgent writes (rollback intents, write-ahead
records) go into a transaction of their own, ahead of whatever else waits, so a storm's bulk records never stand
between an alert and its rollback; within each lane the order of calls is kept.

Whatever happens, the callers get an answer and the writer goes on:
- a storage failure (disk full, read-only, locked, the server gone) fails the whole batch with StoreUnavailable,
  and the in-memory audit head is rolled back with it, so the chain stays contiguous; a connection that cannot be
  used any more is dropped, and the next batch opens a new one (a restarted PostgreSQL needs no restart of ours);
- a write that raises on its own data (a value the database cannot store, a bug) makes the batch run again with
  each write in a savepoint: that write alone fails (WriteRejected), the others commit;
- a write made under a leadership term that is no longer current is not run: it alone fails (Fenced);
- a bug in the writer itself is reported to ``on_crash`` and fails only its batch.

The database specifics come from a :class:`Connector` (how to open, end and judge a connection) and its
:class:`~responder.store.sql.dialect.Dialect`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from responder.store.records import AuditEntry, Fenced, StoreUnavailable, WriteHealth, WriteRejected
from responder.store.sql.dialect import Chain, Conn, Dialect
from responder.store.sql.tx import SqlReader, SqlTx

T = TypeVar("T")
Write = Callable[[SqlTx], Any]
Queued = tuple[Write, "asyncio.Future[Any]", int | None]


class Connector(Protocol):
    """How one backend opens and ends connections (the writer's thread calls these)."""

    @property
    def dialect(self) -> Dialect: ...

    def connect(self) -> Conn:
        """A new connection, the schema migrated (StoreUnavailable when the database cannot be reached)."""
        ...

    def close(self, conn: Conn) -> None: ...

    def rollback(self, conn: Conn) -> None:
        """End the transaction in progress, if any; never raises (the connection may be broken)."""
        ...

    def usable(self, conn: Conn) -> bool:
        """After a storage failure: whether this connection can still be used (else the next batch reconnects)."""
        ...

    def redact(self, text: str) -> str:
        """An error text fit for logs and answers (no secret of the connection in it)."""
        ...


class _PoisonWrite(Exception):
    """A write raised on its own data; the batch is run again with each write isolated."""


@dataclass(frozen=True, slots=True)
class _Rejected:
    message: str


@dataclass(frozen=True, slots=True)
class _Fenced:
    term: int
    current: int


class Writer:
    def __init__(self, connector: Connector, *, key: bytes | None, emit: Callable[[list[AuditEntry]], None]) -> None:
        self.connector = connector
        self.dialect = connector.dialect
        self.key = key
        self.chain = Chain()
        self.health = WriteHealth()
        self.on_crash: Callable[[str, BaseException], None] | None = None
        self._emit = emit
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: Conn | None = None
        self._closed = False
        self._urgent: collections.deque[Queued] = collections.deque()
        self._normal: collections.deque[Queued] = collections.deque()
        self._ready = asyncio.Event()
        self._batcher: asyncio.Task[None] | None = None
        self.max_batch = 512

    # -- lifecycle --

    async def open(self) -> None:
        self._closed = False
        await self.run(self.connection)
        self._batcher = asyncio.create_task(self._batch_loop(), name="store-batcher")

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
            await asyncio.gather(self._batcher, return_exceptions=True)
            self._batcher = None
        self._closed = True
        await self.run(self._disconnect)
        self._executor.shutdown(wait=True)

    def _disconnect(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self.connector.close(conn)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the store's thread (after the commit in progress, if any)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def connection(self) -> Conn:
        """The open connection; a new one after the last was lost (on the store's thread only)."""
        if self._conn is None:
            if self._closed:
                raise StoreUnavailable("database is closed")
            conn = self.connector.connect()
            row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            self.chain = Chain(int(row[0]), str(row[1])) if row else Chain()
            self._conn = conn
        return self._conn

    def read(self, fn: Callable[[SqlReader], T]) -> T:
        """Run reads on the store's thread, in one consistent view; a lost database is StoreUnavailable."""
        conn = self.connection()
        try:
            with self.dialect.read_snapshot(conn):
                return fn(SqlReader(conn, self.dialect))
        except BaseException as exc:
            if not self.dialect.is_storage_failure(exc):
                raise
            self._after_storage_failure(conn)
            raise StoreUnavailable(self.connector.redact(f"database read failed: {exc}")) from exc

    def _after_storage_failure(self, conn: Conn) -> None:
        if self._conn is conn and not self.connector.usable(conn):
            self._disconnect()

    # -- group commit --

    def submit(self, fn: Write, *, urgent: bool = False, term: int | None = None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._normal).append((fn, future, term))
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
            for (_, future, _), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    _settle(future, outcome)
            if entries:
                self._emit(entries)

    def _settle_failed(self, batch: Sequence[Queued], exc: Exception, why: str) -> None:
        self.health.failed(why)
        for _, future, _ in batch:
            if not future.done():
                future.set_exception(exc)

    def _commit(self, batch: Sequence[Queued]) -> tuple[list[Any], list[AuditEntry]]:
        try:
            return self._transaction(batch, isolate=False)
        except _PoisonWrite:
            return self._transaction(batch, isolate=True)

    def _transaction(self, batch: Sequence[Queued], *, isolate: bool) -> tuple[list[Any], list[AuditEntry]]:
        saved = (self.chain.seq, self.chain.hash)
        self.chain.written = []
        conn = self._begin()
        tx = SqlTx(conn, self.dialect, self.chain, self.key)
        run = self._run_isolated if isolate else _run_plain
        try:
            results = [_fenced(tx, term) or run(conn, tx, fn) for fn, _, term in batch]
            _run_plain(conn, tx, SqlTx.flush)  # the batch's audit rows in one executemany, the inbox signal
            conn.execute("COMMIT")
        except BaseException as exc:
            self.chain.seq, self.chain.hash = saved
            self.chain.written = []
            tx.discard()
            self.connector.rollback(conn)
            if self.dialect.is_storage_failure(exc):
                self._after_storage_failure(conn)
                raise StoreUnavailable(self.connector.redact(f"database write failed: {exc}")) from exc
            raise
        return results, self.chain.written

    def _begin(self) -> Conn:
        """Start the transaction. A connection found dead at the start (the server restarted since the last batch)
        is replaced once, at once: nothing of this batch was sent yet, so nothing can be written twice."""
        conn = self.connection()
        if self._try_begin(conn, last=False):
            return conn
        conn = self.connection()
        self._try_begin(conn, last=True)
        return conn

    def _try_begin(self, conn: Conn, *, last: bool) -> bool:
        """Whether the transaction started; False when the connection was dead and is dropped (not ``last``)."""
        try:
            self.dialect.begin_write(conn, self.chain)
            return True
        except BaseException as exc:
            self.connector.rollback(conn)
            if not self.dialect.is_storage_failure(exc):
                raise
            self._after_storage_failure(conn)
            if last or self._conn is conn:  # the last try, or the connection is fine and the database is not
                raise StoreUnavailable(self.connector.redact(f"database write failed: {exc}")) from exc
            return False

    def _run_isolated(self, conn: Conn, tx: SqlTx, fn: Write) -> Any:
        head = (self.chain.seq, self.chain.hash, len(self.chain.written))
        conn.execute("SAVEPOINT one_write")
        try:
            result = fn(tx)
            tx.flush()  # inside the savepoint: an audit row the database refuses fails this write alone
        except Exception as exc:
            if self.dialect.is_storage_failure(exc):
                raise
            tx.discard()
            conn.execute("ROLLBACK TO one_write")
            conn.execute("RELEASE one_write")
            self.chain.seq, self.chain.hash = head[0], head[1]
            del self.chain.written[head[2] :]
            return _Rejected(f"{type(exc).__name__}: {exc}"[:500])
        conn.execute("RELEASE one_write")
        return result


def _fenced(tx: SqlTx, term: int | None) -> _Fenced | None:
    """A leader-only write under a term that is not the current one is not run (checked under a row lock)."""
    if term is None:
        return None
    current = tx.current_term()
    return None if current == term else _Fenced(term, current)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if isinstance(outcome, _Rejected):
        future.set_exception(WriteRejected(outcome.message))
    elif isinstance(outcome, _Fenced):
        future.set_exception(Fenced(f"written under term {outcome.term}, but the current term is {outcome.current}"))
    else:
        future.set_result(outcome)


def _run_plain(conn: Conn, tx: SqlTx, fn: Write) -> Any:
    try:
        return fn(tx)
    except Exception as exc:
        if tx.dialect.is_storage_failure(exc):
            raise
        raise _PoisonWrite from exc
