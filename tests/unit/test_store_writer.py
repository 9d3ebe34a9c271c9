"""The store's one writer survives anything a write function does: bad data fails that write alone (the rest of
its group commit lands, the audit chain stays contiguous), a storage failure fails the batch with StoreUnavailable,
and the writer goes on. ``truncatedAlerts`` >= 2**63 used to raise OverflowError out of the writer loop: every
later webhook hung, holding the write lock, with /healthz green. Each test runs on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from backends import Backend

from responder.store import StoreUnavailable, Tx, WriteRejected
from responder.store.sql import SqlStore as Store


def kv(key: str, value: object) -> object:
    return lambda tx: tx.put_kv(key, value)


async def stored(store: Store) -> dict[str, str]:
    rows = await store.read(lambda r: list(r.conn.execute("SELECT key, value FROM kv WHERE key != 'probe'")))
    return {key: store._writer.dialect.kv_out(value) for key, value in rows}


async def set_read_only(store: Store, on: bool) -> None:
    """The database's own read-only mode on the store's connection (SQLite: query_only; PostgreSQL: every later
    transaction read-only)."""
    if store.shared:
        sql = f"SET default_transaction_read_only = {'on' if on else 'off'}"
    else:
        sql = f"PRAGMA query_only={'ON' if on else 'OFF'}"
    await store.read(lambda r: r.conn.execute(sql))


def ingest(truncated: int) -> Any:
    return lambda tx: tx.ingest(b"{}", [], {}, received_at=1.0, truncated=truncated, source="test")


async def test_a_value_the_database_cannot_store_fails_that_write_alone(store: Store) -> None:
    before = store.chain_length
    futures = [
        store.submit(lambda tx: tx.append_audit("first", {"n": 1})),
        store.submit(ingest(2**63)),  # SQLite: OverflowError when it binds it; PostgreSQL: bigint out of range
        store.submit(lambda tx: tx.append_audit("second", {"n": 2})),
        store.submit(ingest(2**63 - 1)),  # the largest that fits, in both
    ]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert isinstance(results[1], WriteRejected), results[1]
    assert ("out of range" if store.shared else "OverflowError") in str(results[1])
    assert not any(isinstance(r, BaseException) for r in (results[0], results[2], results[3])), results
    assert store.chain_length == before + 3
    assert await store.read(lambda r: list(r.conn.execute("SELECT truncated FROM notifications"))) == [(2**63 - 1,)]
    report = await store.verify()
    assert report.ok, report.problems
    await store.write(kv("later", "still writing"))  # the writer lives on
    assert (await stored(store))["later"] == "still writing"


async def test_a_kv_value_sqlite_cannot_bind_fails_that_write_alone(store: Store) -> None:
    results = await asyncio.gather(
        store.submit(kv("too-big", 2**63)), store.submit(kv("fine", "yes")), return_exceptions=True
    )
    assert isinstance(results[0], WriteRejected)
    assert (await stored(store)) == {"fine": "yes"}


async def test_an_audit_entry_of_a_rejected_write_leaves_no_gap_in_the_chain(store: Store) -> None:
    def half_then_fail(tx: Tx) -> None:
        tx.append_audit("half", {"written": True})
        raise ValueError("a bug after appending")

    results = await asyncio.gather(
        store.submit(half_then_fail),
        store.submit(lambda tx: tx.append_audit("whole", {})),
        return_exceptions=True,
    )
    assert isinstance(results[0], WriteRejected)
    entries = await store.audit_entries()
    assert [e.kind for e in entries] == ["whole"]
    assert (await store.verify()).ok


async def test_audit_entries_around_a_rejected_write_in_one_batch_are_all_kept_in_order(store: Store) -> None:
    """The audit rows of a batch are inserted together at its end: a write rejected in the middle must take only
    its own entries with it, whether they were appended before or after the others'."""

    def two_then_fail(tx: Tx) -> None:
        tx.append_audit("half", {"n": 1})
        tx.append_audit("half", {"n": 2})
        raise ValueError("a bug after appending")

    def two(kind: str) -> Any:
        return lambda tx: [tx.append_audit(kind, {"n": n}) for n in (1, 2)]

    results = await asyncio.gather(
        store.submit(two("before")), store.submit(two_then_fail), store.submit(two("after")), return_exceptions=True
    )
    assert isinstance(results[1], WriteRejected)
    entries = await store.audit_entries()
    assert [(e.kind, e.data["n"]) for e in entries] == [("before", 1), ("before", 2), ("after", 1), ("after", 2)]
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert (await store.verify()).ok


async def test_a_storage_failure_fails_the_batch_and_the_writer_goes_on(store: Store) -> None:
    await set_read_only(store, True)
    with pytest.raises(StoreUnavailable):
        await store.write(kv("a", "1"))
    assert store.health.problem() is not None
    await set_read_only(store, False)
    await store.write(kv("b", "2"))
    assert store.health.problem() is None
    assert (await stored(store)) == {"b": "2"}


class _WriterBug(BaseException):
    """Not an Exception: escapes every handler meant for a write's own errors, as a bug in the writer would."""


async def test_a_bug_in_the_store_itself_is_reported_and_fails_only_its_batch(backend: Backend) -> None:
    store = backend.store()
    crashes: list[str] = []
    store.on_crash = lambda task, exc: crashes.append(f"{task}: {exc}")
    await store.open()

    def bug(tx: Tx) -> None:
        raise _WriterBug("a bug in the writer")

    try:
        with pytest.raises(StoreUnavailable, match="internal store error"):
            await store.write(bug)
        assert crashes == ["store-writer: a bug in the writer"]
        await store.write(kv("b", "2"))
        assert (await stored(store)) == {"b": "2"}
    finally:
        await store.close()
