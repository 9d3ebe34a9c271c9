"""The values the store keeps and hands out, and its two errors: the vocabulary of the store port.

Nothing here knows a database: every backend (SQLite, PostgreSQL) reads and writes these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from responder.core.model import TargetRef


class StoreUnavailable(Exception):
    """The database cannot be written (disk full, read-only, locked, unreachable): callers answer 503 and retry."""


class Fenced(Exception):
    """A leader-only write made under a leadership term that is no longer the current one (a deposed leader):
    refused by the database, not stored. Retrying is pointless: the writer is not the leader any more."""


class WriteRejected(Exception):
    """One write failed on its own data (a value the database cannot store, a bug in the write): that write alone
    is rolled back and fails with this error; the rest of its group commit is unaffected."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: str
    kind: str
    target: str | None
    actor: str
    data: dict[str, Any]
    prev: str
    hash: str

    def body(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "target": self.target,
            "actor": self.actor,
            "data": self.data,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.body(), "prev": self.prev, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    length: int
    head: str
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CoreInput:
    """One recorded input of the decision core, in the order the core saw it (``seq``).

    kinds: ``batch`` (a tick at ``at``, then ``data["events"]`` in order), ``pause`` (``data["why"]``, None to
    resume), ``live`` (a restored target, ``data["target"]``), ``result`` (a rollback's final status:
    ``data["incident"]``, ``data["target"]``, ``data["status"]``, ``data["changed"]``)."""

    seq: int
    at: datetime
    kind: str
    data: dict[str, Any]
    recorded: bool = True  # batch: False while only its acting decisions are on disk (the rest follows)


@dataclass(slots=True)
class WriteHealth:
    """What the last writes said about the database. A tiny probe write may succeed on a full disk while a
    notification does not fit, so /readyz also fails while the latest notification could not be stored."""

    last_ok: float = 0.0
    last_failure: float = 0.0
    failure: str = ""
    ingest_last_ok: float = 0.0
    ingest_last_failure: float = 0.0
    ingest_failure: str = ""
    ingest_failed_size: int = 0  # about how much the failed notification needed

    def wrote(self) -> None:
        self.last_ok = time.monotonic()

    def failed(self, why: str) -> None:
        self.last_failure, self.failure = time.monotonic(), why

    def ingest_ok(self) -> None:
        self.ingest_last_ok = time.monotonic()

    def ingest_failed(self, why: str, *, size: int) -> None:
        self.ingest_last_failure, self.ingest_failure, self.ingest_failed_size = time.monotonic(), why, size

    def probe_size(self) -> int:
        """How large a probe write must be to show that a notification of the size that failed fits again."""
        return max(4096, self.ingest_failed_size if self.ingest_last_failure else 0)

    def problem(self) -> str | None:
        """Why the inbox cannot be trusted to take notifications now, or None."""
        if self.ingest_last_failure > self.ingest_last_ok:
            return f"the last notification could not be stored: {self.ingest_failure}"
        if self.last_failure > self.last_ok:
            return f"the last write failed: {self.failure}"
        return None


@dataclass(frozen=True, slots=True)
class RollbackRecord:
    """One incident's rollback: what it targets (with its traffic objects), each step's record keyed by step id
    (``check``, ``traffic_off:kind/name``, ``scale_zero`` ...), the cited alerts, and where it stands."""

    incident: str
    target: TargetRef
    created_at: str
    received_at: float
    status: str
    dry_run: bool
    steps: dict[str, Any]
    cites: list[Any]
    retrying: bool = False  # failed, and retried while its alerts fire
    attempts: int = 0  # retries started after the first run

    @property
    def key(self) -> str:
        return self.target.key


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One notification to deliver to one destination (``slack``, ``teams`` ...). ``role`` is ``incident`` for
    the first message about an incident at that destination and ``followup`` for later ones (thread replies)."""

    id: int
    incident: str
    kind: str
    role: str
    target: str | None
    data: dict[str, Any]
    created_at: float
    state: str
    attempts: int
    last_error: str | None
    destination: str = "slack"


@dataclass(frozen=True, slots=True)
class Thread:
    """Where an incident's first message went at one destination (for replies), and the metrics it showed."""

    channel: str | None = None
    ref: str | None = None  # the destination's thread reference (Slack: the message ts)
    metrics: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    """One replica in the registry of the shared store. Times are the database's clock (epoch seconds), and
    ``now`` is that clock when the row was read: freshness is judged on one clock, never a replica's own."""

    instance: str  # unique per process start
    identity: str  # the leader-election identity (two live replicas with one identity is a misconfiguration)
    url: str | None  # where the other replicas reach it
    started_at: float
    seen_at: float
    leader_term: int | None  # the term it leads under, None when it does not lead
    now: float


@dataclass(frozen=True, slots=True)
class GitopsRow:
    id: int
    incident: str
    msg_id: str
    body: bytes
    attempts: int
