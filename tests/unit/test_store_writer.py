"""The store's one writer survives anything a write function does: bad data fails that write alone (the rest of
its group commit lands, the audit chain stays contiguous), a storage failure fails the batch with StoreUnavailable,
and the writer goes on. ``truncatedAlerts`` >= 2**63 used to raise OverflowError out of the writer loop: every
later webhook hung, holding the write lock, with /healthz green."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from responder.store import StoreUnavailable, Tx, WriteRejected
from responder.store.sqlite import SqliteStore as Store


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    opened = Store(tmp_path / "responder.db")
    await opened.open()
    yield opened  # type: ignore[misc]
    await opened.close()


def kv(key: str, value: object) -> object:
    return lambda tx: tx.put_kv(key, value)


async def stored(store: Store) -> dict[str, str]:
    return await store.read(lambda r: dict(r.conn.execute("SELECT key, value FROM kv WHERE key != 'probe'")))


async def test_a_value_sqlite_cannot_store_fails_that_write_alone(store: Store) -> None:
    before = store.chain_length
    futures = [
        store.submit(lambda tx: tx.append_audit("first", {"n": 1})),
        store.submit(kv("too-big", 2**63)),  # OverflowError when SQLite binds it
        store.submit(lambda tx: tx.append_audit("second", {"n": 2})),
    ]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert isinstance(results[1], WriteRejected) and "OverflowError" in str(results[1])
    assert not isinstance(results[0], BaseException) and not isinstance(results[2], BaseException)
    assert store.chain_length == before + 2
    report = await store.verify()
    assert report.ok, report.problems
    await store.write(kv("later", "still writing"))  # the writer lives on
    assert (await stored(store))["later"] == "still writing"


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


async def test_a_storage_failure_fails_the_batch_and_the_writer_goes_on(store: Store) -> None:
    await store.read(lambda r: r.conn.execute("PRAGMA query_only=ON"))
    with pytest.raises(StoreUnavailable):
        await store.write(kv("a", "1"))
    assert store.health.problem() is not None
    await store.read(lambda r: r.conn.execute("PRAGMA query_only=OFF"))
    await store.write(kv("b", "2"))
    assert store.health.problem() is None
    assert (await stored(store)) == {"b": "2"}


class _WriterBug(BaseException):
    """Not an Exception: escapes every handler meant for a write's own errors, as a bug in the writer would."""


async def test_a_bug_in_the_store_itself_is_reported_and_fails_only_its_batch(tmp_path: Path) -> None:
    store = Store(tmp_path / "responder.db")
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
