"""What both backends of the store port promise alike, run on each: fencing by the leadership term, the replica
registry, and values at the edges (NUL characters, any Unicode, large bodies, 2**63-1) stored and read back as
they were, with the audit chain verifying over them."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from responder.core.model import AlertEvent, AlertStatus
from responder.store import CoreInput, Fenced, StoreUnavailable, Tx
from responder.store.sql import SqlStore
from responder.store.sqlite import SqliteStore


def audit(kind: str) -> object:
    return lambda tx: tx.append_audit(kind, {})


# -- fencing --


async def test_a_write_under_an_old_term_is_fenced_alone_and_the_rest_of_its_batch_commits(store: SqlStore) -> None:
    assert await store.leadership() == (0, None)
    assert await store.take_leadership("replica-a") == 1
    assert await store.take_leadership("replica-b") == 2
    assert await store.leadership() == (2, "replica-b")
    results = await asyncio.gather(
        store.submit(audit("by-the-deposed-leader"), term=1),
        store.submit(audit("by-the-leader"), term=2),
        store.submit(audit("a-webhook"), term=None),
        store.submit(audit("never-a-term"), term=-1),
        return_exceptions=True,
    )
    assert isinstance(results[0], Fenced) and "term 1" in str(results[0]) and "is 2" in str(results[0])
    assert isinstance(results[3], Fenced)
    assert not isinstance(results[0], StoreUnavailable)  # retrying is pointless: not a storage failure
    assert not any(isinstance(r, BaseException) for r in (results[1], results[2]))
    entries = await store.audit_entries()
    assert [(e.kind, e.actor, e.data) for e in entries[:2]] == [
        ("leadership", "replica-a", {"holder": "replica-a", "term": 1}),
        ("leadership", "replica-b", {"holder": "replica-b", "term": 2}),
    ]
    assert [e.kind for e in entries[2:]] == ["by-the-leader", "a-webhook"]
    assert (await store.verify()).ok


async def test_a_fenced_write_is_not_run_at_all(store: SqlStore) -> None:
    await store.take_leadership("a")
    ran: list[int] = []

    def record(tx: Tx) -> None:
        ran.append(1)
        tx.put_kv("fenced", "written")

    with pytest.raises(Fenced):
        await store.write(record, term=7, urgent=True)
    assert ran == []
    assert await store.read(lambda r: r.kv("fenced")) is None  # type: ignore[attr-defined]


async def test_a_rejected_write_and_a_fenced_write_in_one_batch_leave_the_others_whole(store: SqlStore) -> None:
    await store.take_leadership("a")

    def bad(tx: Tx) -> None:
        tx.append_audit("half", {})
        raise ValueError("bug")

    results = await asyncio.gather(
        store.submit(audit("one"), term=1),
        store.submit(bad, term=1),
        store.submit(audit("fenced"), term=0),
        store.submit(audit("two"), term=1),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["AuditEntry", "WriteRejected", "Fenced", "AuditEntry"]
    assert [e.kind for e in await store.audit_entries()] == ["leadership", "one", "two"]
    assert (await store.verify()).ok


# -- the replica registry --


async def test_heartbeats_register_refresh_and_forget_replicas_on_the_database_clock(store: SqlStore) -> None:
    await store.heartbeat(instance="i-1", identity="pod-a", url="http://10.0.0.1:8080", leader_term=None)
    await store.heartbeat(instance="i-2", identity="pod-b", url=None, leader_term=3)
    first = {r.instance: r for r in await store.replicas()}
    await asyncio.sleep(0.05)
    await store.heartbeat(instance="i-1", identity="pod-a", url="http://10.0.0.1:8080", leader_term=4)
    rows = {r.instance: r for r in await store.replicas()}
    assert set(rows) == {"i-1", "i-2"}
    one = rows["i-1"]
    assert (one.identity, one.url, one.leader_term) == ("pod-a", "http://10.0.0.1:8080", 4)
    assert one.started_at == first["i-1"].started_at  # kept from the first heartbeat
    assert one.seen_at > first["i-1"].seen_at and one.now >= one.seen_at
    assert abs(one.now - datetime.now(UTC).timestamp()) < 60  # epoch seconds
    assert (rows["i-2"].url, rows["i-2"].leader_term) == (None, 3)
    await store.forget_replica("i-2")
    assert [r.instance for r in await store.replicas()] == ["i-1"]


# -- values at the edges --

HOSTILE = "nul\0inside, \uffff (the escape), \uffff0 \uffff\uffff, \ud7ff\ue000 emoji \U0001f600 rtl \u202e \\0 '\"%s ?"


def event(**changes: object) -> AlertEvent:
    fields: dict[str, object] = {
        "fingerprint": "f1",
        "status": AlertStatus.FIRING,
        "starts_at": datetime(2026, 11, 27, 12, tzinfo=UTC),
        "ends_at": None,
        "labels": {"alertname": "A", "label": HOSTILE},
        "annotations": {"big": "x" * 1_000_000},
        "generator_url": "http://prometheus/graph?" + HOSTILE,
        **changes,
    }
    return AlertEvent(**fields)  # type: ignore[arg-type]


async def test_nul_characters_unicode_and_large_values_round_trip(store: SqlStore) -> None:
    raw = b"\0\xff\xfe" + HOSTILE.encode() + bytes(range(256)) * 20_000  # 5 MB, every byte value
    stored = await store.ingest(raw, [event()], {"note": HOSTILE}, received_at=1.5, truncated=2**63 - 1)
    nid = stored[0].notification_id
    assert await store.raw_notification(nid) == raw
    again = (await store.events_by_ids([stored[0].event_id]))[stored[0].event_id]
    assert again.generator_url == event().generator_url and again.labels["label"] == HOSTILE
    assert again.annotations["big"] == "x" * 1_000_000
    undecided = await store.undecided_events(notification_id=nid)
    assert [e.event_id for e, _ in undecided] == [stored[0].event_id] and undecided[0][1] == 1.5
    await store.write(lambda tx: tx.append_audit(HOSTILE, {HOSTILE: HOSTILE}, target=HOSTILE, actor=HOSTILE))
    await store.write(lambda tx: tx.put_kv(HOSTILE, HOSTILE))
    await store.write(lambda tx: tx.append_core_input(CoreInput(2**63 - 1, datetime.now(UTC), "batch", {})))
    await store.write(lambda tx: tx.finish_outbox(1, state="failed", now=1.0, error=HOSTILE))  # no such row: fine
    entry = (await store.audit_entries(kind=HOSTILE))[0]
    assert (entry.target, entry.actor, entry.data) == (HOSTILE, HOSTILE, {HOSTILE: HOSTILE})
    assert await store.read(lambda r: r.kv(HOSTILE)) == HOSTILE  # type: ignore[attr-defined]
    assert await store.last_core_seq() == 2**63 - 1
    receipt = (await store.audit_entries(kind="receipt"))[0]
    assert receipt.data["note"] == HOSTILE and receipt.data["truncated_alerts"] == 2**63 - 1
    report = await store.verify()
    assert report.ok, report.problems


async def test_a_receipt_carries_its_alerts_as_stored_in_entries_of_at_most_100(store: SqlStore) -> None:
    alerts = [event(fingerprint=f"fp{i}", annotations={}, labels={"alertname": f"A{i}"}) for i in range(250)]
    one = await store.ingest(b"{}", alerts[:1], {"receiver": "r"}, received_at=1.0)
    many = await store.ingest(b"[]", alerts, {"receiver": "r"}, received_at=2.0)
    entries = await store.audit_entries(limit=100)
    assert [(e.kind, e.data.get("part")) for e in entries] == [
        ("receipt", None),
        ("receipt", None),
        ("receipt.events", 2),
        ("receipt.events", 3),
    ]
    first, second, *parts = (e.data for e in entries)
    assert first["alerts"] == 1 and first["events"] == [
        {
            "event_id": one[0].event_id,
            "fingerprint": "fp0",
            "status": "firing",
            "starts_at": "2026-11-27T12:00:00Z",
            "ends_at": None,
            "alertname": "A0",
            "labels": {"alertname": "A0"},
        }
    ]
    assert second["alerts"] == 250 and len(second["events"]) == 100
    assert {p["notification_id"] for p in parts} == {second["notification_id"]} == {many[0].notification_id}
    covered = [a["event_id"] for data in (second, *parts) for a in data["events"]]
    assert covered == [e.event_id for e in many]  # every alert once, in order
    assert (await store.verify()).ok


async def test_values_no_backend_can_store_fail_that_write_alone(store: SqlStore) -> None:
    results = await asyncio.gather(
        store.submit(lambda tx: tx.append_audit("big", {"n": 2**64})),  # canonical JSON: 64-bit integers at most
        store.submit(lambda tx: tx.append_audit("surrogate", {"s": "\ud800"})),  # not encodable as UTF-8
        store.submit(lambda tx: tx.append_core_input(CoreInput(2**63, datetime.now(UTC), "batch", {}))),
        store.submit(audit("fine")),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["WriteRejected"] * 3 + ["AuditEntry"]
    assert [e.kind for e in await store.audit_entries()] == ["fine"]


async def test_the_largest_integers_round_trip(store: SqlStore) -> None:
    await store.write(lambda tx: tx.append_audit("ints", {"max": 2**63 - 1, "min": -(2**63), "u64": 2**64 - 1}))
    assert (await store.audit_entries(kind="ints"))[0].data == {"max": 2**63 - 1, "min": -(2**63), "u64": 2**64 - 1}
    assert (await store.verify()).ok


# -- SQLite: a database of the previous schema --


@contextlib.asynccontextmanager
async def migrated(db: Path, script: str) -> AsyncIterator[tuple[SqliteStore, list[AlertEvent], str]]:
    """A database with one notification, changed by ``script`` into what an older version left behind, then opened
    by this version: the store, the stored events and the chain's head before the change."""
    first = SqliteStore(db)
    await first.open()
    stored = await first.ingest(b"{}", [event(annotations={})], {}, received_at=1.0)
    head = (await first.verify()).head
    await first.close()
    with sqlite3.connect(db) as conn:
        conn.executescript(script)
    store = SqliteStore(db)
    await store.open()
    try:
        yield store, stored, head
    finally:
        await store.close()


async def test_a_sqlite_database_of_schema_3_is_migrated_and_still_verifies(tmp_path: Path) -> None:
    script = "DROP TABLE leadership; DROP TABLE replicas; PRAGMA user_version = 3;"
    async with migrated(tmp_path / "responder.db", script) as (store, _, head):
        assert (await store.verify(expect_head=head, expect_length=1)).ok  # the receipt
        assert await store.leadership() == (0, None)
        assert await store.take_leadership("solo") == 1
        assert await store.read(lambda r: r.conn.execute("PRAGMA user_version").fetchone()[0]) == 5
        assert (await store.verify()).ok


async def test_a_sqlite_database_of_schema_4_loses_the_unused_decided_at_index(tmp_path: Path) -> None:
    script = "CREATE INDEX events_decided_at ON events (decided_at); PRAGMA user_version = 4;"
    async with migrated(tmp_path / "responder.db", script) as (store, stored, _):
        indexes = await store.read(
            lambda r: {row[0] for row in r.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        )
        assert "events_decided_at" not in indexes and "events_undecided" in indexes
        assert [e.event_id for e, _ in await store.undecided_events()] == [stored[0].event_id]
        assert await store.read(lambda r: r.conn.execute("PRAGMA user_version").fetchone()[0]) == 5
