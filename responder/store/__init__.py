"""Durable state behind one port (:mod:`responder.store.port`): the inbox, the decision core's inputs, the
rollbacks, the audit hash chain, the notification outbox and the GitOps webhooks, the leadership term and the
replica registry. All SQL lives in :mod:`responder.store.sql`, shared by the two backends (``sqlite``: one replica;
``postgres``: shared by several); :mod:`responder.store.factory` picks one from the settings. The rest of the
responder sees the port, the records and three errors, never a database type."""

from responder.store.chain import GENESIS, canonical, entry_hash
from responder.store.port import AuditSink, Reader, Store, Tx
from responder.store.records import (
    AuditEntry,
    CoreInput,
    Fenced,
    GitopsRow,
    OutboxRow,
    ReplicaRow,
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
    "Fenced",
    "GitopsRow",
    "OutboxRow",
    "Reader",
    "ReplicaRow",
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
