"""The SQLite backend of the store port: one database file (WAL, synchronous=FULL), the embedded default for one
replica. Everything but the file and its pragmas is the shared SQL (:mod:`responder.store.sql`)."""

from __future__ import annotations

from pathlib import Path

from responder.store.port import AuditSink
from responder.store.sql import SqlStore
from responder.store.sqlite.dialect import SqliteConnector


class SqliteStore(SqlStore):
    """The responder's database in one file. Create, then :meth:`open`; :meth:`close` at the end."""

    def __init__(self, path: Path, *, audit_key: bytes | None = None, sink: AuditSink | None = None) -> None:
        super().__init__(SqliteConnector(path), audit_key=audit_key, sink=sink)
        self.path = path
