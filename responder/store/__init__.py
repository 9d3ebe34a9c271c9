"""Durable state behind one port (:mod:`responder.store.port`): the inbox, the decision core's inputs, the
rollbacks, the audit hash chain, the notification outbox and the GitOps webhooks. All SQL lives in a backend
package; the rest of the responder sees the port, the records and two errors, never a database type."""

from responder.store.chain import GENESIS, canonical, entry_hash
from responder.store.port import AuditSink, Reader, Store, Tx
from responder.store.records import (
    AuditEntry,
    CoreInput,
    GitopsRow,
    OutboxRow,
    RollbackRecord,
    StoreUnavailable,
    Thread,
    VerifyReport,
    WriteHealth,
    WriteRejected,
)

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditSink",
    "CoreInput",
    "GitopsRow",
    "OutboxRow",
    "Reader",
    "RollbackRecord",
    "Store",
    "StoreUnavailable",
    "Thread",
    "Tx",
    "VerifyReport",
    "WriteHealth",
    "WriteRejected",
    "canonical",
    "entry_hash",
]
