"""What is particular to PostgreSQL: its :class:`PostgresDialect` and :class:`PostgresConnector`.

Several replicas write one database, so the audit head cannot live in memory: every write transaction takes the
chain's transaction-level advisory lock, then reads the head (``seq`` and ``hash`` of the last entry) before it
appends; the lock is held to the commit, so the replicas append one after another to one chain. Reads that belong
together run in one REPEATABLE READ snapshot (a chain verified while another replica appends sees one state).

Storage failures, by SQLSTATE class: connection (08), resources such as a full disk (53), operator intervention
such as a statement timeout or an administrator's shutdown (57), system I/O (58), lock and serialization failures
(55, 40), a read-only server (25006) and internal errors (XX); a lost connection raised by the client; a missing
privilege (42501). Everything else a write raises (bad data 22, a constraint 23, a bug in its SQL 42) is that
write's own problem.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg

from responder.store.chain import GENESIS
from responder.store.postgres import schema
from responder.store.postgres.connect import PgConn, PostgresConfig, connect, redactor
from responder.store.records import StoreUnavailable
from responder.store.sql import Chain, Conn, JsonSql

CHAIN_LOCK = (0x63727370, 2)  # pg_advisory_xact_lock(int, int) keys: "crsp", the audit chain
INBOX_CHANNEL = "canary_responder_inbox"
SIGNAL_IDS = 300  # notification ids per inbox signal: at most 300 x 20 bytes, under the 8000-byte payload limit

_STORAGE_CLASSES = frozenset({"08", "25", "40", "53", "55", "57", "58", "XX"})
_STORAGE_STATES = frozenset({"42501"})  # insufficient privilege: the database refuses this replica altogether
_DATA_STATES = frozenset({"25P02"})  # in failed transaction: a write that swallowed its own error and went on


class PostgresDialect:
    name = "postgres"
    shared = True
    now = "(extract(epoch from clock_timestamp())::double precision)"
    for_share = " FOR SHARE"  # a take-over's UPDATE of the row waits for this transaction
    json = JsonSql(
        field="(({expr})::jsonb ->> '{key}')",
        true="((({expr})::jsonb -> '{key}') = 'true'::jsonb)",
        elements="jsonb_array_elements(({expr})::jsonb) AS {alias}(value)",
    )

    def insert_id(self, conn: Conn, sql: str, args: Sequence[Any]) -> int:
        return int(conn.execute(f"{sql} RETURNING id", args).fetchone()[0])

    def begin_write(self, conn: Conn, chain: Chain) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(?, ?)", CHAIN_LOCK)
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        chain.seq, chain.hash = (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def scan(self, conn: Conn, sql: str) -> Iterable[Any]:
        return _pg(conn).scan(sql)

    @contextlib.contextmanager
    def read_snapshot(self, conn: Conn) -> Iterator[None]:
        pg = _pg(conn)
        pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        except BaseException:
            pg.rollback()
            raise
        pg.execute("COMMIT")

    def notify_inbox(self, conn: Conn, notification_ids: Sequence[int]) -> None:
        # One signal per transaction, the ids comma-separated, in payloads well under PostgreSQL's 8000 bytes.
        ids = [str(i) for i in notification_ids]
        for start in range(0, len(ids), SIGNAL_IDS):
            conn.execute("SELECT pg_notify(?, ?)", (INBOX_CHANNEL, ",".join(ids[start : start + SIGNAL_IDS])))

    def kv_in(self, value: str | bytes) -> Any:
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise TypeError(f"a kv value is str or bytes, not {type(value).__name__}")

    def kv_out(self, value: Any) -> str:
        return bytes(value).decode()

    def is_storage_failure(self, exc: BaseException) -> bool:
        if isinstance(exc, OSError | MemoryError):
            return True
        if not isinstance(exc, psycopg.Error):
            return False
        state = exc.sqlstate
        if state is None:  # raised by the client itself: a lost or closed connection, or a value it refused
            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        if state in _DATA_STATES:
            return False
        return state[:2] in _STORAGE_CLASSES or state in _STORAGE_STATES


class PostgresConnector:
    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        self._dialect = PostgresDialect()
        self._redact = redactor(config.dsn)
        self.migrated = False

    @property
    def dialect(self) -> PostgresDialect:
        return self._dialect

    def connect(self) -> Conn:
        conn = connect(self.config)
        if not self.migrated:  # once per store: a reconnection finds the schema in place
            try:
                schema.migrate(conn)
            except BaseException as exc:
                conn.raw.close()
                if self._dialect.is_storage_failure(exc):
                    raise StoreUnavailable(self.redact(f"cannot migrate the schema: {exc}")) from exc
                raise
            self.migrated = True
        return conn

    def close(self, conn: Conn) -> None:
        _pg(conn).raw.close()

    def rollback(self, conn: Conn) -> None:
        _pg(conn).rollback()

    def usable(self, conn: Conn) -> bool:
        return _pg(conn).usable

    def redact(self, text: str) -> str:
        return self._redact(text)


def _pg(conn: Conn) -> PgConn:
    assert isinstance(conn, PgConn)
    return conn
