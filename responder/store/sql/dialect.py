"""What differs between the SQL backends, in one small interface: the shared code (:mod:`responder.store.sql`)
writes its SQL once, with ``?`` placeholders, and asks the :class:`Dialect` for the rest.

The differences, all of them:
- placeholders: the connection a backend hands over (:class:`Conn`) takes ``?`` (PostgreSQL's adapter turns them
  into ``%s``); upserts and insert-or-ignore are written ``ON CONFLICT ... DO UPDATE / DO NOTHING``, which both
  databases understand, so they need no knob;
- JSON inside SQL (:attr:`Dialect.json`, a :class:`JsonSql`): canonical JSON is stored as TEXT in both (the audit
  hashes are over that text), only the functions that look into it differ;
- how an insert returns the new row's id (:meth:`Dialect.insert_id`);
- how a write transaction starts (:meth:`Dialect.begin_write`: SQLite ``BEGIN IMMEDIATE``, the single writer's
  cached audit head; PostgreSQL ``BEGIN``, the chain's advisory lock and the head read from the table) and how a
  group of reads is made consistent (:meth:`Dialect.read_snapshot`);
- how a whole table is read without holding it in memory (:meth:`Dialect.scan`);
- the database clock (:attr:`Dialect.now`), the row lock of a term check (:attr:`Dialect.for_share`), the inbox
  signal (:meth:`Dialect.notify_inbox`), how a key-value row stores a value (:meth:`Dialect.kv_in` / ``kv_out``);
- which exceptions mean "the database cannot be written now" (StoreUnavailable for the batch) rather than "this
  write's data is bad" (WriteRejected for that write alone): :meth:`Dialect.is_storage_failure`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from responder.store.chain import GENESIS
from responder.store.records import AuditEntry


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """The few calls of a DB-API connection the shared SQL makes (``?`` placeholders)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


@dataclass(slots=True)
class Chain:
    """The audit head; advanced inside a transaction, rolled back with it."""

    seq: int = 0
    hash: str = GENESIS
    written: list[AuditEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class JsonSql:
    """How SQL looks into canonical JSON kept as TEXT: templates over ``{expr}`` (a JSON text or value) and
    ``{key}`` (a top-level key) or ``{alias}``."""

    field: str  # the key's value as an SQL scalar (text for a JSON string)
    true: str  # a condition: the key's value is JSON true
    elements: str  # a FROM item: one row per element of a JSON array, the element as {alias}.value

    def field_of(self, expr: str, key: str) -> str:
        return self.field.format(expr=expr, key=key)

    def true_of(self, expr: str, key: str) -> str:
        return self.true.format(expr=expr, key=key)

    def elements_of(self, expr: str, alias: str) -> str:
        return self.elements.format(expr=expr, alias=alias)


class Dialect(Protocol):
    name: str
    shared: bool  # other replicas write the same database
    now: str  # SQL: the database clock, epoch seconds (a float)
    for_share: str  # SQL suffix of a SELECT that must hold its rows until the transaction ends ("" if moot)
    json: JsonSql

    def insert_id(self, conn: Conn, sql: str, args: Sequence[Any]) -> int:
        """Run an INSERT into a table whose key is ``id``; return the new row's id."""
        ...

    def begin_write(self, conn: Conn, chain: Chain) -> None:
        """Start a write transaction; ``chain`` holds the audit head to append to once this returns."""
        ...

    def scan(self, conn: Conn, sql: str) -> Iterable[Any]:
        """The rows of a query over a whole table, without holding them all in memory (other queries may run on
        ``conn`` while it is read)."""
        ...

    def read_snapshot(self, conn: Conn) -> AbstractContextManager[None]:
        """Around a group of reads outside a write: one consistent view of the database."""
        ...

    def notify_inbox(self, conn: Conn, notification_ids: Sequence[int]) -> None:
        """Inside the ingest transaction: tell every replica (on commit) that these notifications arrived."""
        ...

    def kv_in(self, value: str | bytes) -> Any: ...

    def kv_out(self, value: Any) -> str: ...

    def is_storage_failure(self, exc: BaseException) -> bool:
        """True when ``exc`` means the database cannot be written now (the batch fails, StoreUnavailable);
        False for a write's own problem (its data, a bug in it: that write alone fails, WriteRejected)."""
        ...
