"""What is particular to SQLite: its :class:`SqliteDialect` and :class:`SqliteConnector` (one file, WAL,
synchronous=FULL, a 2 s busy timeout). One replica writes the file, through one connection on the writer's thread,
so the audit head kept in memory is the head on disk, and reads on that thread see every commit."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from responder.store.sql import Chain, Conn, JsonSql
from responder.store.sqlite import schema

# Failures of the database itself (the whole transaction is lost); any other exception raised by a write function
# is that write's own problem. OverflowError, ValueError, TypeError, IntegrityError ... belong to the second kind.
_STORAGE_ERRORS = (sqlite3.OperationalError, sqlite3.DatabaseError, OSError, MemoryError)
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError)
_NO_SNAPSHOT = contextlib.nullcontext()


class SqliteDialect:
    name = "sqlite"
    shared = False
    now = "((julianday('now') - 2440587.5) * 86400.0)"
    for_share = ""  # BEGIN IMMEDIATE already holds the whole database
    json = JsonSql(
        field="json_extract({expr}, '$.{key}')",
        true="json_extract({expr}, '$.{key}')",
        elements="json_each({expr}) AS {alias}",
    )

    def insert_id(self, conn: Conn, sql: str, args: Sequence[Any]) -> int:
        cursor = conn.execute(sql, args)
        return int(getattr(cursor, "lastrowid", 0) or 0)

    def begin_write(self, conn: Conn, chain: Chain) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the single writer: the head in memory is the head on disk

    def scan(self, conn: Conn, sql: str) -> Iterable[Any]:
        return conn.execute(sql)

    def read_snapshot(self, conn: Conn) -> AbstractContextManager[None]:
        return _NO_SNAPSHOT  # reads run on the writer's thread, between its transactions: nothing to add

    def notify_inbox(self, conn: Conn, notification_ids: Sequence[int]) -> None:
        pass  # one replica: nobody else to tell

    def kv_in(self, value: str | bytes) -> Any:
        return value

    def kv_out(self, value: Any) -> str:
        return str(value)

    def is_storage_failure(self, exc: BaseException) -> bool:
        return isinstance(exc, _STORAGE_ERRORS) and not isinstance(exc, _DATA_ERRORS)


class SqliteConnector:
    dialect = SqliteDialect()

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> Conn:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=2000")
        schema.create(conn)
        return conn

    def close(self, conn: Conn) -> None:
        _sqlite(conn).close()

    def rollback(self, conn: Conn) -> None:
        if _sqlite(conn).in_transaction:
            conn.execute("ROLLBACK")

    def usable(self, conn: Conn) -> bool:
        return True  # a locked, full or read-only file is the same file once it is writable again

    def redact(self, text: str) -> str:
        return text


def _sqlite(conn: Conn) -> sqlite3.Connection:
    assert isinstance(conn, sqlite3.Connection)
    return conn
