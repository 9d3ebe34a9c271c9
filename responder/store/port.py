"""The store port: what the rest of the responder needs from durable state, with no database type in sight.

Writes are small synchronous functions of a :class:`Tx` (one unit of work) queued to the backend's writer, which
runs many of them in one transaction (group commit) and resolves each caller once its rows are durable. A write
that raises on its own data fails alone (:class:`WriteRejected`); a database that cannot be written fails the
whole batch (:class:`StoreUnavailable`). A leader-only write carries its leadership ``term``: the backend checks
it in the transaction that would commit the write and refuses a stale one (:class:`Fenced`), alone. Reads are
functions of a :class:`Reader`, or the async queries of :class:`Store`. Every backend implements these three
protocols, with one shared SQL implementation (:mod:`responder.store.sql`): SQLite (:mod:`responder.store.sqlite`,
the embedded default, one replica) and PostgreSQL (:mod:`responder.store.postgres`, shared by several replicas for
high availability).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from responder.core.model import AlertEvent
from responder.store.records import (
    AuditEntry,
    CoreInput,
    GitopsRow,
    OutboxRow,
    ReplicaRow,
    RollbackRecord,
    Thread,
    VerifyReport,
    WriteHealth,
)

T = TypeVar("T")
AuditSink = Callable[[list[dict[str, Any]]], None]  # called once per commit with its new entries


class Reader(Protocol):
    """Queries that run on the store's connection (inside a write's transaction too, through :class:`Tx`)."""

    def rollback(self, incident: str) -> RollbackRecord | None: ...

    def outbox_rows(self, incident: str) -> list[OutboxRow]: ...

    def thread(self, incident: str, destination: str) -> Thread: ...

    def event_facts(self, event_ids: Sequence[int]) -> list[dict[str, Any]]: ...

    def outbox_backlog(self) -> tuple[int, float | None]:
        """(rows waiting to be delivered, creation time of the oldest of them)."""
        ...

    def next_outbox_due(self) -> float | None: ...

    def notice_incidents(self, limit: int) -> list[str]:
        """The newest incidents that started with a notice other than a rollback (held, refused, notify ...)."""
        ...

    def open_notice(self, kind: str, target: str, since: float) -> str | None:
        """The newest incident about ``target`` that started with a ``kind`` notice at ``since`` or later."""
        ...

    def due_gitops(self, now: float, limit: int = 20) -> list[GitopsRow]: ...

    def next_gitops_due(self) -> float | None: ...


class Tx(Reader, Protocol):
    """One unit of work inside a transaction: everything it writes commits together, or not at all."""

    def append_audit(
        self, kind: str, data: dict[str, Any], *, target: str | None = None, actor: str = "responder"
    ) -> AuditEntry: ...

    def ingest(
        self,
        raw: bytes,
        events: Sequence[AlertEvent],
        meta: dict[str, Any],
        *,
        received_at: float,
        truncated: int,
        source: str,
    ) -> list[AlertEvent]:
        """Store one notification, its events and their audit entries; return the events with their ids."""
        ...

    def mark_decided(self, event_ids: Sequence[int], at: datetime) -> None: ...

    def append_core_input(self, item: CoreInput) -> None: ...

    def mark_input_recorded(self, seq: int) -> None: ...

    def insert_rollback(self, record: RollbackRecord) -> None: ...

    def update_rollback(
        self,
        incident: str,
        *,
        status: str | None = None,
        step: tuple[str, dict[str, Any]] | None = None,
        cite: Any = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        """Change one rollback: its status, one step's record, one more cited alert, spec fields (merged)."""
        ...

    def record_pause(self, state: dict[str, Any]) -> None:
        """Persist the kill switch and audit the flip."""
        ...

    def put_kv(self, key: str, value: str | bytes) -> None: ...

    def delete_kv(self, key: str) -> None: ...

    def insert_outbox(
        self,
        *,
        incident: str,
        kind: str,
        destination: str,
        target: str | None,
        data: dict[str, Any],
        now: float,
        state: str = "pending",
        fingerprints: Sequence[str] = (),
    ) -> int:
        """Queue one notification for one destination; the first for an incident there is its message, later ones
        are follow-ups. ``fingerprints``: the alerts it cites (a later resolution joins the same thread)."""
        ...

    def incident_for_alert(self, fingerprint: str) -> str | None: ...

    def incident_citing(self, fingerprint: str) -> str | None:
        """The newest rollback citing this alert (one still under way has no notification yet)."""
        ...

    def latest_incident_of(self, target: str) -> str | None: ...

    def claim_outbox(self, *, now: float, limit: int = 20) -> list[OutboxRow]:
        """Due pending rows, oldest first, skipping any whose incident has an earlier undelivered row at the same
        destination (a thread reply needs its parent's reference)."""
        ...

    def finish_outbox(
        self, row_id: int, *, state: str, now: float, retry_at: float | None = None, error: str | None = None
    ) -> None: ...

    def note_thread(
        self,
        incident: str,
        destination: str,
        *,
        channel: str | None = None,
        ref: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None: ...

    def insert_gitops(self, *, incident: str, msg_id: str, body: bytes, now: float) -> bool:
        """One signed webhook per incident (a second one for the same incident is ignored)."""
        ...

    def finish_gitops(
        self, row_id: int, *, state: str, now: float, retry_at: float | None = None, error: str | None = None
    ) -> None: ...


class Store(Protocol):
    """The responder's durable state. Create, then :meth:`open`; :meth:`close` at the end."""

    @property
    def health(self) -> WriteHealth:
        """What the last writes said (for /readyz)."""
        ...

    @property
    def on_crash(self) -> Callable[[str, BaseException], None] | None: ...

    @on_crash.setter
    def on_crash(self, hook: Callable[[str, BaseException], None] | None) -> None:
        """Called with (task, exception) when the writer itself hits a bug (the supervisor's report)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def shared(self) -> bool:
        """Whether other replicas write to this store too (PostgreSQL: True; SQLite: False, one replica)."""
        ...

    on_inbox: Callable[[int], None] | None
    """Shared store only: called with the notification id of every notification any replica commits, and with 0
    after the listening connection was (re)established (something may have been missed: look at everything)."""

    async def write(self, fn: Callable[[Tx], T], *, urgent: bool = False, term: int | None = None) -> T:
        """Run ``fn(tx)`` in the next transaction; return its result once committed. Urgent writes (rollback
        intents, write-ahead records) go into a transaction of their own, ahead of whatever else is queued.
        With ``term``, ``fn`` runs only if that is still the current leadership term, checked in the transaction
        that commits it; otherwise it raises :class:`Fenced` (the other writes of the batch are unaffected)."""
        ...

    def submit(self, fn: Callable[[Tx], T], *, urgent: bool = False, term: int | None = None) -> asyncio.Future[T]:
        """Queue ``fn(tx)`` now (keeping the order of calls within its lane); the future resolves once committed.
        ``term`` as for :meth:`write`."""
        ...

    async def take_leadership(self, holder: str) -> int:
        """Become the leader: the next term, with ``holder`` and an audit entry ``leadership``, in one transaction
        that waits for any transaction that checked the old term. Once it returns, no write fenced with an older
        term can commit. Returns the new term."""
        ...

    async def leadership(self) -> tuple[int, str | None]:
        """(the current term, its holder): (0, None) before anyone led."""
        ...

    async def heartbeat(self, *, instance: str, identity: str, url: str | None, leader_term: int | None) -> None:
        """Register or refresh this replica (``seen_at``: the database clock)."""
        ...

    async def replicas(self) -> list[ReplicaRow]: ...

    async def forget_replica(self, instance: str) -> None:
        """Remove a replica from the registry (on a clean shutdown)."""
        ...

    async def read(self, fn: Callable[[Reader], T]) -> T: ...

    async def ingest(
        self,
        raw: bytes,
        events: Sequence[AlertEvent],
        meta: dict[str, Any],
        *,
        received_at: float,
        truncated: int = 0,
        source: str = "alertmanager",
    ) -> list[AlertEvent]: ...

    async def audit(
        self, kind: str, data: dict[str, Any], *, target: str | None = None, actor: str = "responder"
    ) -> AuditEntry: ...

    async def undecided_events(self, *, notification_id: int | None = None) -> list[tuple[AlertEvent, float]]:
        """Events not decided yet, oldest first, with their receipt time (only those of one notification)."""
        ...

    async def undecided_ids(self) -> list[int]: ...

    async def events_by_ids(self, event_ids: Sequence[int]) -> dict[int, AlertEvent]: ...

    async def core_inputs(self, since: datetime) -> list[CoreInput]: ...

    async def last_core_seq(self) -> int: ...

    async def oldest_retrying(self) -> datetime | None: ...

    async def rollbacks(self, *, status: str | None = None, incident: str | None = None) -> list[RollbackRecord]: ...

    async def rollbacks_since_restore(self, target: str) -> list[RollbackRecord]:
        """The target's rollbacks since its last restore, newest first (what a restore undoes, together)."""
        ...

    async def pause_state(self) -> dict[str, Any] | None: ...

    async def paused(self) -> str | None: ...

    async def raw_notification(self, notification_id: int) -> bytes | None: ...

    async def audit_entries(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        target: str | None = None,
        kind: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[AuditEntry]: ...

    async def verify(self, *, expect_length: int | None = None, expect_head: str | None = None) -> VerifyReport: ...

    async def probe(self) -> None:
        """Real writes (as large as the last notification that failed): StoreUnavailable when they cannot land."""
        ...

    @property
    def chain_length(self) -> int:
        """The audit chain's length as this replica last saw it (a shared chain may have grown since)."""
        ...

    @property
    def chain_head(self) -> str: ...
