"""The store port over SQL, for both backends: :class:`SqlStore` turns the port's calls into units of work for the
group-commit writer (:mod:`responder.store.sql.writer`) and reads on the writer's thread, which see everything
committed so far. The audit log is append-only: each entry holds the previous one's hash and its own SHA-256
(HMAC-SHA256 with a key) over canonical JSON; a receipt carries the SHA-256 of the raw notification kept for
replay, so editing either is caught by ``verify``.

A backend subclasses it with its :class:`~responder.store.sql.writer.Connector` (SQLite: one file, one replica;
PostgreSQL: shared by the replicas, with the inbox signal on top).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson

from responder.core.model import AlertEvent, parse_iso
from responder.store.port import AuditSink, Reader, Tx
from responder.store.records import (
    AuditEntry,
    CoreInput,
    ReplicaRow,
    RollbackRecord,
    StoreUnavailable,
    VerifyReport,
    WriteHealth,
    WriteRejected,
)
from responder.store.sql.reads import SqlReader
from responder.store.sql.tx import SqlTx
from responder.store.sql.verify import read_audit, verify_chain
from responder.store.sql.writer import Connector, Writer

T = TypeVar("T")


class SqlStore:
    """The responder's database. Create, then :meth:`open`; :meth:`close` at the end."""

    def __init__(self, connector: Connector, *, audit_key: bytes | None = None, sink: AuditSink | None = None) -> None:
        self._key = audit_key
        self._sink = sink
        self._writer = Writer(connector, key=audit_key, emit=self._emit)
        self.on_inbox: Callable[[int], None] | None = None

    # -- lifecycle and plumbing --

    async def open(self) -> None:
        await self._writer.open()

    async def close(self) -> None:
        await self._writer.close()

    @property
    def shared(self) -> bool:
        return self._writer.dialect.shared

    @property
    def health(self) -> WriteHealth:
        return self._writer.health

    @property
    def on_crash(self) -> Callable[[str, BaseException], None] | None:
        return self._writer.on_crash

    @on_crash.setter
    def on_crash(self, hook: Callable[[str, BaseException], None] | None) -> None:
        self._writer.on_crash = hook

    @property
    def chain_length(self) -> int:
        return self._writer.chain.seq

    @property
    def chain_head(self) -> str:
        return self._writer.chain.hash

    def _emit(self, entries: list[AuditEntry]) -> None:
        if self._sink is not None:
            self._sink([entry.as_dict() for entry in entries])

    async def write(self, fn: Callable[[Tx], T], *, urgent: bool = False, term: int | None = None) -> T:
        result: T = await self._writer.submit(fn, urgent=urgent, term=term)
        return result

    def submit(self, fn: Callable[[Tx], T], *, urgent: bool = False, term: int | None = None) -> asyncio.Future[T]:
        return self._writer.submit(fn, urgent=urgent, term=term)

    async def read(self, fn: Callable[[Reader], T]) -> T:
        return await self._writer.run(lambda: self._writer.read(fn))

    async def _query(self, fn: Callable[[SqlReader], T]) -> T:
        return await self._writer.run(lambda: self._writer.read(fn))

    # -- writes --

    async def ingest(
        self,
        raw: bytes,
        events: Sequence[AlertEvent],
        meta: dict[str, Any],
        *,
        received_at: float,
        truncated: int = 0,
        source: str = "alertmanager",
    ) -> list[AlertEvent]:
        def store(tx: SqlTx) -> list[AlertEvent]:
            return tx.ingest(raw, events, meta, received_at=received_at, truncated=truncated, source=source)

        try:
            stored: list[AlertEvent] = await self._writer.submit(store)
        except (StoreUnavailable, WriteRejected) as exc:
            self.health.ingest_failed(str(exc), size=len(raw) * 3 + 4096)  # raw body, parsed events, audit copy
            raise
        self.health.ingest_ok()
        return stored

    async def audit(
        self, kind: str, data: dict[str, Any], *, target: str | None = None, actor: str = "responder"
    ) -> AuditEntry:
        entry: AuditEntry = await self._writer.submit(
            lambda tx: tx.append_audit(kind, data, target=target, actor=actor)
        )
        return entry

    async def probe(self) -> None:
        """Real writes through the writer, as large as the last notification that could not be stored (at least
        4 KiB), committed then removed: a tiny write may still fit on a full disk. Its success clears that
        failure, so a replica that receives no notifications while not ready becomes ready again once space is
        back."""
        blob = b"\0" * self.health.probe_size()
        await self._writer.submit(lambda tx: tx.put_kv("probe", blob))
        await self._writer.submit(lambda tx: tx.delete_kv("probe"))
        self.health.ingest_ok()

    # -- leadership and the replicas --

    async def take_leadership(self, holder: str) -> int:
        term: int = await self._writer.submit(lambda tx: tx.take_leadership(holder), urgent=True)
        return term

    async def leadership(self) -> tuple[int, str | None]:
        return await self._query(lambda r: r.leadership())

    async def heartbeat(self, *, instance: str, identity: str, url: str | None, leader_term: int | None) -> None:
        await self._writer.submit(
            lambda tx: tx.heartbeat(instance=instance, identity=identity, url=url, leader_term=leader_term)
        )

    async def replicas(self) -> list[ReplicaRow]:
        return await self._query(lambda r: r.replicas())

    async def forget_replica(self, instance: str) -> None:
        await self._writer.submit(lambda tx: tx.forget_replica(instance))

    # -- reads --

    async def raw_notification(self, notification_id: int) -> bytes | None:
        return await self._query(lambda r: r.raw_notification(notification_id))

    async def undecided_events(self, *, notification_id: int | None = None) -> list[tuple[AlertEvent, float]]:
        return await self._query(lambda r: r.undecided_events(notification_id))

    async def undecided_ids(self) -> list[int]:
        return await self._query(lambda r: r.undecided_ids())

    async def events_by_ids(self, event_ids: Sequence[int]) -> dict[int, AlertEvent]:
        return await self._query(lambda r: r.events_by_ids(event_ids))

    async def core_inputs(self, since: datetime) -> list[CoreInput]:
        return await self._query(lambda r: r.core_inputs(since))

    async def last_core_seq(self) -> int:
        return await self._query(lambda r: r.last_core_seq())

    async def oldest_retrying(self) -> datetime | None:
        found = await self._query(lambda r: r.oldest_retrying())
        return parse_iso(found) if found else None

    async def rollbacks(self, *, status: str | None = None, incident: str | None = None) -> list[RollbackRecord]:
        return await self._query(lambda r: r.rollbacks(status=status, incident=incident))

    async def rollbacks_since_restore(self, target: str) -> list[RollbackRecord]:
        return await self._query(lambda r: r.rollbacks_since_restore(target))

    async def pause_state(self) -> dict[str, Any] | None:
        raw = await self._query(lambda r: r.kv("pause"))
        state: dict[str, Any] | None = orjson.loads(raw) if raw else None
        return state

    async def paused(self) -> str | None:
        """Why the responder is paused (as the core describes it), or None."""
        state = await self.pause_state()
        return pause_reason(state) if state else None

    async def audit_entries(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        target: str | None = None,
        kind: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[AuditEntry]:
        return await self._query(
            lambda r: list(
                read_audit(r.conn, after=after, limit=limit, target=target, kind=kind, since=since, until=until)
            )
        )

    async def verify(self, *, expect_length: int | None = None, expect_head: str | None = None) -> VerifyReport:
        return await self._query(
            lambda r: verify_chain(r.conn, r.dialect, self._key, expect_length=expect_length, expect_head=expect_head)
        )


def pause_reason(state: dict[str, Any]) -> str | None:
    return f"by {state['actor']}: {state['reason']}" if state.get("paused") else None
