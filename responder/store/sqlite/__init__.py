"""The SQLite backend of the store port (the embedded default: one replica, the demo, most tests)."""

from responder.store.sql import pause_reason, read_audit
from responder.store.sqlite.dialect import SqliteConnector, SqliteDialect
from responder.store.sqlite.store import SqliteStore
from responder.store.sqlite.verify import open_readonly

__all__ = ["SqliteConnector", "SqliteDialect", "SqliteStore", "open_readonly", "pause_reason", "read_audit"]
