"""The PostgreSQL backend of the store port: one database shared by every replica (one inbox, one audit chain,
the leadership term that fences a deposed leader), for high availability.

Why psycopg 3, a writer thread and an async LISTEN: the shared SQL (:mod:`responder.store.sql`) is written as
small synchronous units of work run back to back in one transaction by one writer thread, which is what makes
group commit, savepoint isolation of a bad write and the rolled-back audit head simple and identical for both
backends; psycopg 3 gives that thread a plain blocking connection (its C build, ``psycopg[binary]``, needs no
compiler in the image), and the same library gives the event loop an AsyncConnection for LISTEN, which only waits
and so needs no thread. asyncpg would have forced a second, async copy of all the SQL and of the writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from responder.store.port import AuditSink
from responder.store.postgres.connect import PgConn, PostgresConfig, connect, redactor
from responder.store.postgres.dialect import PostgresConnector, PostgresDialect
from responder.store.postgres.listen import InboxListener
from responder.store.records import StoreUnavailable
from responder.store.sql import SqlStore


class PostgresStore(SqlStore):
    """The shared database. Create, then :meth:`open` (connects, migrates, starts listening); :meth:`close`."""

    def __init__(
        self, config: PostgresConfig, *, audit_key: bytes | None = None, sink: AuditSink | None = None
    ) -> None:
        super().__init__(PostgresConnector(config), audit_key=audit_key, sink=sink)
        self.config = config
        self.listener = InboxListener(config, self._inbox)
        self._listening: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await super().open()
        self._listening = asyncio.create_task(self.listener.run(), name="store-inbox-listener")

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)
            self._listening = None
        await super().close()

    def _inbox(self, notification_id: int) -> None:
        hook = self.on_inbox
        if hook is not None:
            hook(notification_id)


@contextmanager
def read_only(config: PostgresConfig) -> Iterator[tuple[PgConn, PostgresDialect]]:
    """A connection in one read-only snapshot (the CLI's audit commands: no migration, no write)."""
    conn = connect(config)
    dialect = PostgresDialect()
    try:
        with dialect.read_snapshot(conn):
            yield conn, dialect
    except psycopg.Error as exc:  # a lost server, a database without the responder's tables ...
        raise StoreUnavailable(redactor(config.dsn)(f"cannot read the audit log: {exc}")) from None
    finally:
        conn.raw.close()
