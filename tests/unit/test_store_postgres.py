"""What only the shared PostgreSQL store has to get right, against a real server: several Store objects (replicas)
on one database keep one audit chain; a take-over waits for a transaction that checked the old term; several
replicas migrate at once; the server stops (between or in the middle of a batch) and comes back while the same
Store object goes on; a full disk; the inbox signal; and the DSN's password never shows."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from backends import Backend
from postgres import PostgresServer

from responder.cli.main import main
from responder.store import Fenced, StoreUnavailable, Tx
from responder.store.postgres import PostgresConfig, PostgresDialect, PostgresStore, redactor
from responder.store.postgres.dialect import CHAIN_LOCK, SIGNAL_IDS
from responder.store.postgres.listen import notification_ids
from responder.store.sql import SqlStore


@pytest.fixture
def pg(tmp_path: Path, postgres_server: PostgresServer, postgres_dsn: str) -> Backend:
    return Backend("postgres", tmp_path, dsn=postgres_dsn, server=postgres_server)


@pytest.fixture
async def stores(pg: Backend) -> AsyncIterator[list[SqlStore]]:
    """Two replicas' stores on one database."""
    opened = [pg.store(), pg.store()]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


def audit(kind: str) -> Any:
    return lambda tx: tx.append_audit(kind, {})


async def kinds(store: SqlStore) -> list[str]:
    return [e.kind for e in await store.audit_entries(limit=10_000)]


# -- one chain, one term, across replicas --


async def test_two_stores_appending_at_once_keep_one_valid_chain(stores: list[SqlStore]) -> None:
    a, b = stores
    for wave in range(20):
        futures = [s.submit(audit(f"{name}-{wave}-{i}")) for i in range(15) for s, name in ((a, "a"), (b, "b"))]
        futures.append(a.submit(lambda tx: tx.ingest(b"{}", [], {}, received_at=1.0, truncated=0, source="a")))
        futures.append(b.submit(lambda tx: tx.ingest(b"{}", [], {}, received_at=1.0, truncated=0, source="b")))
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)], results
    entries = await a.audit_entries(limit=10_000)
    assert [e.seq for e in entries] == list(range(1, 20 * 32 + 1))
    assert len({e.kind for e in entries if e.kind != "receipt"}) == 20 * 30
    for store in (a, b):
        report = await store.verify()
        assert report.ok and report.length == 640, report.problems
    assert max(a.chain_length, b.chain_length) == 640  # each saw the head of its own last transaction


async def test_take_leadership_waits_for_a_transaction_that_checked_the_old_term(
    pg: Backend, stores: list[SqlStore]
) -> None:
    a, b = stores
    term = await a.take_leadership("replica-a")
    inside, release = threading.Event(), threading.Event()

    def slow(tx: Tx) -> str:
        tx.put_kv("written-under", str(term))  # no audit entry: the chain's primary key does not serialise it
        inside.set()
        release.wait(10)  # the transaction stays open, after its term check, on the writer's thread
        return "committed"

    write = a.submit(slow, term=term)
    assert await asyncio.to_thread(inside.wait, 5)
    with psycopg.connect(pg.dsn or "", autocommit=True) as other:  # every write transaction holds the chain lock
        assert other.execute("SELECT pg_try_advisory_lock(%s, %s)", CHAIN_LOCK).fetchone() == (False,)
    taking = asyncio.create_task(b.take_leadership("replica-b"))
    await asyncio.sleep(0.5)
    assert not taking.done()  # the take-over waits for the transaction that checked term 1
    release.set()
    assert await write == "committed"
    assert await taking == term + 1
    with pytest.raises(Fenced):
        await a.write(lambda tx: tx.put_kv("written-under", "old term"), term=term)
    assert (await a.leadership()) == (term + 1, "replica-b")
    assert await a.read(lambda r: r.kv("written-under")) == str(term)  # type: ignore[attr-defined]


async def test_several_replicas_migrating_at_once_create_the_schema_once(pg: Backend) -> None:
    opened = [pg.store() for _ in range(6)]
    try:
        await asyncio.gather(*(store.open() for store in opened))
    finally:
        await asyncio.gather(*(store.close() for store in opened))
    assert pg.query("SELECT version FROM schema_migrations") == [(1,)]
    again = pg.store()
    await again.open()  # and again later: nothing left to do
    try:
        await again.write(audit("after"))
        assert (await again.verify()).ok
    finally:
        await again.close()


# -- the server goes away and comes back --


async def test_a_stopped_server_is_unavailable_and_the_same_store_recovers(pg: Backend) -> None:
    assert pg.server is not None
    store = pg.store()
    await store.open()
    try:
        await store.write(audit("before"))
        await asyncio.to_thread(pg.server.stop, "fast")
        with pytest.raises(StoreUnavailable):
            await store.write(audit("while-down"))
        with pytest.raises(StoreUnavailable):
            await store.audit_entries()
        assert store.health.problem() is not None
        await asyncio.to_thread(pg.server.start)
        await store.write(audit("after"))  # no restart of the store: its writer reconnected
        assert store.health.problem() is None
        await asyncio.to_thread(pg.server.stop, "fast")  # down and up again with no write in between:
        await asyncio.to_thread(pg.server.start)
        await store.write(audit("after-the-second-restart"))  # the dead connection is replaced at once
        assert await kinds(store) == ["before", "after", "after-the-second-restart"]
        assert (await store.verify()).ok
    finally:
        await store.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_server_stopped_in_the_middle_of_a_batch_loses_the_batch_whole(pg: Backend, mode: str) -> None:
    assert pg.server is not None
    store = pg.store()
    await store.open()
    inside, release = threading.Event(), threading.Event()

    def first(tx: Tx) -> None:
        tx.append_audit("first-of-the-batch", {})
        inside.set()
        release.wait(10)

    try:
        await store.write(audit("before"))
        batch = [store.submit(first), store.submit(audit("second-of-the-batch"))]  # one batch: queued together
        assert await asyncio.to_thread(inside.wait, 5)
        await asyncio.to_thread(pg.server.stop, mode)
        release.set()
        results = await asyncio.gather(*batch, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        await asyncio.to_thread(pg.server.start)
        await store.write(audit("after"))
        assert await kinds(store) == ["before", "after"]
        assert (await store.verify()).ok
    finally:
        release.set()
        await store.close()


async def test_a_held_chain_lock_times_out_as_unavailable_then_writes_go_on(pg: Backend) -> None:
    store = pg.store(statement_timeout_s=0.5)
    await store.open()
    try:
        with psycopg.connect(pg.dsn or "", autocommit=True) as other:  # a replica stalled in its transaction
            other.execute("SELECT pg_advisory_lock(%s, %s)", CHAIN_LOCK)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="statement timeout"):
                await store.write(audit("blocked"))
            assert time.monotonic() - started < 3
            assert await kinds(store) == []  # reads do not wait for the chain's lock
        await store.write(audit("free-again"))
        assert await kinds(store) == ["free-again"]
    finally:
        await store.close()


async def test_a_replica_stalled_inside_its_transaction_is_cut_off_and_recovers(
    pg: Backend, stores: list[SqlStore]
) -> None:
    """idle_in_transaction_session_timeout (= statement_timeout): a replica frozen while it holds the chain's lock
    does not stop the others for longer than that; its own batch fails and its writer goes on."""
    b = stores[0]
    a = pg.store(statement_timeout_s=0.3)
    await a.open()
    release = threading.Event()

    def frozen(tx: Tx) -> None:
        tx.append_audit("frozen", {})
        release.wait(1.5)  # longer than the timeout, between two statements of the transaction

    try:
        stalled = a.submit(frozen)
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await b.write(audit("the-other-replica"))  # the server ended the stalled session and freed the lock
        assert time.monotonic() - started < 1.2
        with pytest.raises(StoreUnavailable):
            await stalled
        await a.write(audit("a-again"))
        assert await kinds(a) == ["the-other-replica", "a-again"]
        assert (await a.verify()).ok
    finally:
        release.set()
        await a.close()


async def test_audit_tail_reads_the_shared_chain(
    pg: Backend, stores: list[SqlStore], capsys: pytest.CaptureFixture[str]
) -> None:
    from support import write_config

    for n in range(3):
        await stores[n % 2].write(audit(f"entry-{n}"))
    config = write_config(pg.tmp_path, storage=pg.storage())
    assert main(["audit", "tail", "--config", str(config), "-n", "2", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line)["kind"] for line in lines] == ["entry-1", "entry-2"]
    assert main(["audit", "verify", "--config", str(config), "--expect-length", "3"]) == 0
    assert capsys.readouterr().out.startswith("audit chain OK: 3 entries")


@pytest.fixture
def small_tablespace(pg: Backend) -> Iterator[tuple[str, Path]]:
    """A database whose tables live on an 8 MiB tmpfs (root only), its WAL on the server's own disk."""
    assert pg.server is not None
    mountpoint = pg.server.make_owned_dir(pg.server.root / "small")  # where the server may reach
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    space = pg.server.make_owned_dir(mountpoint / "ts")
    name = f"small_{os.getpid()}"
    try:
        pg.server.admin(f"CREATE TABLESPACE {name} LOCATION '{space}'")
        pg.server.admin(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' TABLESPACE {name}")
        yield pg.server.dsn(name), mountpoint
    finally:
        pg.server.drop_database(name)
        pg.server.admin(f"DROP TABLESPACE IF EXISTS {name}")
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


async def test_a_full_disk_is_unavailable_and_recovers_when_space_is_back(
    tmp_path: Path, small_tablespace: tuple[str, Path]
) -> None:
    dsn, mountpoint = small_tablespace
    store = Backend("postgres", tmp_path, dsn=dsn).store()
    await store.open()
    filler = mountpoint / "filler"
    try:
        with filler.open("wb") as out:
            with pytest.raises(OSError):
                while True:
                    out.write(os.urandom(65536))
                    out.flush()
        blob = os.urandom(2 << 20)  # incompressible: it needs new pages
        with pytest.raises(StoreUnavailable, match="No space left|could not extend"):
            await store.write(lambda tx: tx.put_kv("big", blob))
        filler.unlink()
        await store.write(lambda tx: tx.put_kv("big", blob))
        assert await store.read(lambda r: len(r.conn.execute("SELECT value FROM kv").fetchone()[0])) == 2 << 20
    finally:
        filler.unlink(missing_ok=True)
        await store.close()


# -- the inbox signal --


async def test_every_replica_hears_of_every_notification_and_of_a_reconnection(
    pg: Backend, stores: list[SqlStore]
) -> None:
    assert pg.server is not None
    a, b = stores
    assert isinstance(a, PostgresStore)
    heard: list[int] = []
    a.on_inbox = heard.append
    await asyncio.wait_for(a.listener.connected.wait(), 10)

    def ingest(tx: Tx) -> None:
        tx.ingest(b"{}", [], {}, received_at=1.0, truncated=0, source="test")

    def ingest_then_fail(tx: Tx) -> None:
        ingest(tx)
        raise ValueError("rolled back: nobody may hear of it")

    await b.write(ingest)  # another replica's
    await a.write(ingest)  # its own
    with pytest.raises(Exception, match="rolled back"):
        await b.write(ingest_then_fail)
    await b.write(ingest)
    stored = {row[0] for row in pg.query("SELECT id FROM notifications")}
    assert len(stored) == 3
    await wait_until(lambda: stored <= set(heard))
    await asyncio.to_thread(pg.server.stop, "fast")
    await asyncio.to_thread(pg.server.start)
    await wait_until(lambda: 0 in heard[len(stored) :], timeout=20)  # reconnected: "look at everything"
    assert set(heard) - {0} == stored  # the rolled-back notification's id was never signalled


async def test_one_transaction_signals_all_its_notifications_in_payloads_under_the_limit(
    pg: Backend, stores: list[SqlStore]
) -> None:
    a, b = stores
    assert isinstance(a, PostgresStore)
    heard: list[int] = []
    a.on_inbox = heard.append
    await asyncio.wait_for(a.listener.connected.wait(), 10)

    def many(tx: Tx) -> None:
        for _ in range(2 * SIGNAL_IDS + 5):
            tx.ingest(b"{}", [], {}, received_at=1.0, truncated=0, source="test")

    await b.write(many)
    stored = {row[0] for row in pg.query("SELECT id FROM notifications")}
    assert len(stored) == 2 * SIGNAL_IDS + 5
    await wait_until(lambda: stored <= set(heard))
    assert len(heard) == len(stored)  # each once


def test_a_signal_names_its_notifications_and_anything_else_means_look_at_everything() -> None:
    assert notification_ids("7") == [7]
    assert notification_ids("7,8,9223372036854775807") == [7, 8, 2**63 - 1]
    assert notification_ids("") == [0]
    assert notification_ids("hello") == [0]
    assert notification_ids("-3") == [0]


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# -- secrets and errors --

PASSWORD = "s3cr3t-Pa55w0rd!"


def test_the_redactor_removes_the_dsn_and_its_password_in_every_spelling() -> None:
    for dsn in (
        f"postgresql://app:{PASSWORD.replace('!', '%21')}@db:5432/responder",
        f"host=db user=app password='{PASSWORD}' dbname=responder",
        f"host=db user=app password={PASSWORD}",
        f"postgresql://app@db/responder?password={PASSWORD}&sslmode=require",
    ):
        redacted = redactor(dsn)(f"error: {dsn} ... {PASSWORD} ... {PASSWORD.replace('!', '%21')}")
        assert PASSWORD not in redacted and redacted.startswith("error: *** ... ")
        assert PASSWORD.replace("!", "%21") not in redacted or "%21" not in dsn  # as written in a URI, too
    assert PASSWORD not in repr(PostgresConfig(dsn=f"postgresql://app:{PASSWORD}@db/x"))


async def test_the_password_never_shows_in_errors_health_or_logs(
    pg: Backend, caplog: pytest.LogCaptureFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pg.server is not None and pg.dsn is not None
    caplog.set_level(logging.DEBUG)
    with_password = pg.dsn.replace("postgresql://app@", f"postgresql://app:{PASSWORD}@")  # trust: it is ignored
    store = PostgresStore(PostgresConfig(dsn=with_password, connect_timeout_s=2))
    await store.open()
    texts: list[str] = []
    try:
        await store.write(audit("ok"))
        await asyncio.to_thread(pg.server.stop, "fast")
        for _ in range(2):
            with pytest.raises(StoreUnavailable) as failed:
                await store.write(audit("down"))
            texts += [str(failed.value), repr(failed.value), store.health.failure]
        await asyncio.sleep(0.5)  # the listener tries to reconnect, and says so
    finally:
        await asyncio.to_thread(pg.server.start)
        await store.close()
    port = pg.dsn.rsplit(":", 1)[1].split("/")[0]
    for dsn in (
        with_password.replace(port, "1"),
        f"host=127.0.0.1 port=1 user=app password='{PASSWORD}'",
        f"host=127.0.0.1 port={port} user=app password=two {PASSWORD}",  # libpq: missing "=" after "<password>"
    ):
        unreachable = PostgresStore(PostgresConfig(dsn=dsn, connect_timeout_s=2))
        with pytest.raises(StoreUnavailable) as failed:
            await unreachable.open()
        assert failed.value.__cause__ is None and failed.value.__suppress_context__
        texts += [str(failed.value), repr(failed.value)]
    config = tmp_path / "config.yaml"
    secret = tmp_path / "dsn"
    secret.write_text(with_password.replace(port, "1"))
    storage = {"backend": "postgres", "path": "x.db", "postgres": {"dsn": {"file": str(secret)}}}
    from support import write_config

    config = write_config(tmp_path, storage=storage)
    assert main(["audit", "verify", "--config", str(config)]) == 1
    texts += list(capsys.readouterr())
    assert "cannot connect" in texts[-1]
    assert any("inbox listener" in record.getMessage() for record in caplog.records)
    texts.append(caplog.text)
    assert not [t for t in texts if PASSWORD in t or PASSWORD.replace("!", "%21") in t]


async def test_a_database_not_in_utf8_is_refused_with_a_clear_message(pg: Backend) -> None:
    assert pg.server is not None
    pg.server.admin("CREATE DATABASE latin TEMPLATE template0 ENCODING 'SQL_ASCII'")
    try:
        store = PostgresStore(PostgresConfig(dsn=pg.server.dsn("latin")))
        with pytest.raises(StoreUnavailable, match="not UTF8"):
            await store.open()
    finally:
        pg.server.drop_database("latin")


@pytest.mark.parametrize(
    ("sqlstate", "storage"),
    [
        ("53100", True),  # disk full
        ("57014", True),  # statement timeout
        ("57P01", True),  # administrator's shutdown
        ("08006", True),  # connection failure
        ("25006", True),  # read-only transaction
        ("40001", True),  # serialization failure
        ("55P03", True),  # lock not available
        ("42501", True),  # insufficient privilege
        ("XX000", True),  # internal error
        ("22003", False),  # numeric value out of range
        ("22021", False),  # invalid byte sequence
        ("23505", False),  # unique violation
        ("42P01", False),  # undefined table: a bug in a write
        ("25P02", False),  # in failed transaction: a write that swallowed its own error
    ],
)
def test_which_errors_are_storage_failures(sqlstate: str, storage: bool) -> None:
    assert PostgresDialect().is_storage_failure(psycopg.errors.lookup(sqlstate)("x")) is storage


def test_errors_raised_by_the_client_and_by_python() -> None:
    dialect = PostgresDialect()
    assert dialect.is_storage_failure(psycopg.OperationalError("the connection is lost"))
    assert dialect.is_storage_failure(psycopg.InterfaceError("the connection is closed"))
    assert dialect.is_storage_failure(OSError("no space"))
    assert not dialect.is_storage_failure(psycopg.DataError("PostgreSQL text fields cannot contain NUL"))
    assert not dialect.is_storage_failure(ValueError("a bug"))
