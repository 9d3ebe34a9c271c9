"""The SQL of the store, shared by both backends: one :class:`~responder.store.sql.tx.SqlTx` (the writing SQL), one
:class:`~responder.store.sql.reads.SqlReader`, one group-commit writer, one chain verification and one
:class:`~responder.store.sql.store.SqlStore`, parameterised by a small :class:`~responder.store.sql.dialect.Dialect`
(what SQLite and PostgreSQL spell differently) and a :class:`~responder.store.sql.writer.Connector` (how each
opens, ends and judges a connection). No database driver is imported here."""

from responder.store.sql.dialect import Chain, Conn, Cursor, Dialect, JsonSql
from responder.store.sql.reads import SqlReader
from responder.store.sql.store import SqlStore, pause_reason
from responder.store.sql.tx import SqlTx
from responder.store.sql.verify import check_expected_head, read_audit, verify_chain
from responder.store.sql.writer import Connector, Writer

__all__ = [
    "Chain",
    "Conn",
    "Connector",
    "Cursor",
    "Dialect",
    "JsonSql",
    "SqlReader",
    "SqlStore",
    "SqlTx",
    "Writer",
    "check_expected_head",
    "pause_reason",
    "read_audit",
    "verify_chain",
]
