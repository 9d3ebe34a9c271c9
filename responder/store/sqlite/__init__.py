"""The SQLite backend of the store port (the embedded default: one replica, the demo, most tests)."""

from responder.store.sqlite.store import SqliteStore, pause_reason
from responder.store.sqlite.verify import check_expected_head, open_readonly, read_audit, verify_chain

__all__ = ["SqliteStore", "check_expected_head", "open_readonly", "pause_reason", "read_audit", "verify_chain"]
