"""Storage faults: the database becomes unwritable while the responder runs, then comes back.

Real mechanisms, SQLite:
- ``disk_full``: the database lives on a small tmpfs mounted for the test (root only; skipped otherwise), which a
  filler file then fills up to ENOSPC;
- ``locked``: another process holds ``BEGIN EXCLUSIVE`` on the database (the store gives up after its 2 s busy
  timeout);
- ``read_only``: ``PRAGMA query_only`` on the store's own connection, SQLite's read-only mode (root ignores file
  permissions, and a tmpfs with open files cannot be remounted read-only).
PostgreSQL (the shared store):
- ``unreachable``: the server is shut down (every session ended) and started again later; the responder is not
  restarted, its writer reconnects;
- ``locked``: another session holds the audit chain's advisory lock (a replica stalled inside a transaction): every
  write waits out the 2 s statement timeout;
- ``read_only``: ``default_transaction_read_only`` on the store's own connection (a server turned read-only).
(PostgreSQL's full disk is in tests/unit/test_store_postgres.py: its writes land in free space of existing pages
for a while, so "every write fails at once" is not how it behaves.)

Documented behaviour (README): webhooks are answered 503 with Retry-After (Alertmanager retries), /readyz fails,
the engine keeps retrying the records it must make rather than dropping them; when storage returns everything
recovers, and nothing accepted is lost: every 200-acknowledged notification is decided exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backends import Backend
from support import Running, alert, notification, running_responder, wait_for, write_config

from faults.helpers import ok_mutations, query, settle
from responder.store.postgres.dialect import CHAIN_LOCK
from responder.testing.emulator import Emulator

LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs mounted on a temporary directory (needs root / CAP_SYS_ADMIN)."""
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mountpoint)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


class Breaker:
    """Makes the responder's database unwritable, then writable again, by one of the mechanisms."""

    def __init__(self, how: str, running: Running, db: Path, backend: Backend) -> None:
        self.how, self.running, self.db, self.backend = how, running, db, backend
        self._holder: asyncio.subprocess.Process | None = None
        self._session: psycopg.Connection[Any] | None = None

    async def _pragma(self, sql: str) -> None:
        await self.running.services.store.read(lambda r: r.conn.execute(sql).fetchall())

    async def _session_sql(self, sql: str) -> None:
        await self.running.services.store.read(lambda r: r.conn.execute(sql))

    async def break_it(self) -> None:
        if self.backend.shared:
            await self._break_postgres()
        elif self.how == "disk_full":
            # Empty the WAL first, so that the very next write needs new blocks; then take every free block.
            await self._pragma("PRAGMA wal_checkpoint(TRUNCATE)")
            with (self.db.parent / "filler").open("wb") as filler:
                try:
                    while True:
                        filler.write(b"\0" * 65536)
                        filler.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        elif self.how == "locked":
            self._holder = await asyncio.create_subprocess_exec(
                sys.executable, "-c", LOCK_HOLDER, str(self.db), stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert self._holder.stdout is not None
            assert (await self._holder.stdout.readline()).strip() == b"locked"
        else:
            await self._pragma("PRAGMA query_only=ON")

    async def _break_postgres(self) -> None:
        assert self.backend.server is not None and self.backend.dsn is not None
        if self.how == "unreachable":
            await asyncio.to_thread(self.backend.server.stop, "fast")
        elif self.how == "locked":
            self._session = await asyncio.to_thread(psycopg.connect, self.backend.dsn, autocommit=True)
            self._session.execute("SELECT pg_advisory_lock(%s, %s)", CHAIN_LOCK)
        else:
            await self._session_sql("SET default_transaction_read_only = on")

    async def _repair_postgres(self) -> None:
        assert self.backend.server is not None
        if self.how == "unreachable":
            await asyncio.to_thread(self.backend.server.start)
        elif self.how == "locked":
            assert self._session is not None
            self._session.close()
        else:
            await self._session_sql("SET default_transaction_read_only = off")

    async def repair(self) -> None:
        if self.backend.shared:
            await self._repair_postgres()
        elif self.how == "disk_full":
            (self.db.parent / "filler").unlink()
        elif self.how == "locked":
            assert self._holder is not None and self._holder.stdin is not None
            self._holder.stdin.write(b"release\n")
            await self._holder.stdin.drain()
            await self._holder.wait()
        else:
            await self._pragma("PRAGMA query_only=OFF")

    async def close(self) -> None:
        if self._session is not None:
            self._session.close()
        if self._holder is not None and self._holder.returncode is None:
            self._holder.kill()
            await self._holder.wait()


@contextlib.asynccontextmanager
async def broken(how: str, running: Running, db: Path, backend: Backend) -> AsyncIterator[Breaker]:
    breaker = Breaker(how, running, db, backend)
    try:
        yield breaker
    finally:
        await breaker.close()


async def post(running: Running, payload: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with await running.post_alerts(payload) as response:
        return response.status, await response.json(), dict(response.headers)


async def readyz(running: Running) -> tuple[int, dict[str, Any]]:
    async with running.session.get(f"{running.url}/readyz") as response:
        return response.status, await response.json()


FAULTS = [
    ("sqlite", "disk_full"),
    ("sqlite", "locked"),
    ("sqlite", "read_only"),
    ("postgres", "unreachable"),
    ("postgres", "locked"),
    ("postgres", "read_only"),
]


@pytest.mark.parametrize(("backend", "how"), FAULTS, indirect=["backend"], ids=[f"{b}-{h}" for b, h in FAULTS])
async def test_unwritable_storage_answers_503_then_recovers_without_losing_anything(
    tmp_path: Path, cluster: tuple[Emulator, str], how: str, backend: Backend, request: pytest.FixtureRequest
) -> None:
    emulator, url = cluster
    directory = request.getfixturevalue("small_fs") if how == "disk_full" else tmp_path / "data"
    db = directory / "responder.db"
    config = write_config(tmp_path, kube_url=url, storage=backend.storage(path=str(db)))
    acknowledged: dict[int, int] = {}  # notification id -> events, for every 200

    async def deliver(payload: dict[str, Any]) -> None:
        status, body, _ = await post(running, payload)
        assert status == 200, body
        acknowledged[body["notification_id"]] = body["events"]

    async with running_responder(config) as running, broken(how, running, db, backend) as breaker:
        await deliver(notification(alert(app="checkout")))
        await settle(running)
        # A rollback whose traffic step is slow is under way when storage fails: its step result and final
        # status must be recorded once storage is back.
        emulator.add_fault(method="PATCH", path_contains="/ingresses/payments-canary", delay=1.0)
        await deliver(notification(alert(app="payments"), alert("CanaryHighLatency", app="checkout")))
        await wait_for(lambda: any(m.path.endswith("/payments-canary") for m in emulator.mutations), "payments")

        await breaker.break_it()
        refused = notification(alert(app="search"), external_url="http://alertmanager-1:9093")
        status, body, headers = await post(running, refused)
        assert (status, body["error"], headers.get("Retry-After")) == (503, "store_unavailable", "5")
        status, ready = await readyz(running)
        assert status == 503 and ready["checks"]["inbox"].startswith("failing")
        assert ready["checks"]["kubernetes"] == "ok"
        await wait_for(lambda: ok_mutations(emulator, kind="Ingress")[-1:] == ["payments-canary"], "traffic off")
        await asyncio.sleep(0.3)  # the step result cannot be recorded now: the engine keeps retrying it
        if how != "unreachable":  # (nothing can be read from a server that is down)
            assert [r.status for r in await running.services.store.rollbacks()] == ["done", "pending"]

        await breaker.repair()
        status, ready = await readyz(running)
        assert status == 200, ready
        await deliver(refused)  # Alertmanager retries the notification that got a 503
        await settle(running, within=30)

        rollbacks = {r.key: r.status for r in await running.services.store.rollbacks()}
        events = await query(running, "SELECT id, notification_id, decided_at FROM events")
        decisions = [
            (entry.data["event_id"], entry.data["outcome"])
            for entry in await running.services.store.audit_entries(kind="decision", limit=1000)
        ]
        verify = await running.services.store.verify()
        unavailable = running.services.metrics.registry.get_sample_value(
            "canary_responder_webhooks_total", {"result": "unavailable"}
        )
    assert rollbacks == {"shop/checkout-canary": "done", "shop/payments-canary": "done", "shop/search-canary": "done"}
    stored: dict[int, int] = {}
    for _, notification_id, decided_at in events:
        assert decided_at is not None
        stored[notification_id] = stored.get(notification_id, 0) + 1
    assert stored == acknowledged  # every acknowledged notification, and only those, with all its events
    assert sorted(e for e, _ in decisions) == sorted(e[0] for e in events)  # each event decided exactly once
    assert sorted(o for _, o in decisions) == ["coalesced", "rollback", "rollback", "rollback"]
    assert sorted(ok_mutations(emulator, kind="Deployment", subresource="scale")) == [
        "checkout-canary",
        "payments-canary",
        "search-canary",
    ]
    assert verify.ok, verify.problems
    assert unavailable == 1


async def test_a_nearly_full_disk_is_not_ready_while_notifications_do_not_fit(
    tmp_path: Path, cluster: tuple[Emulator, str], small_fs: Path
) -> None:
    """A few KiB free: a tiny probe write still fits, a real notification does not. /readyz used to say the
    inbox was ok while every webhook got 503; it must fail until a notification of that size fits again."""
    _, url = cluster
    db = small_fs / "responder.db"
    config = write_config(tmp_path, kube_url=url, storage={"path": str(db)}, listen={"body_limit_bytes": 4 << 20})
    big = notification(alert(app="checkout", runbook="x" * 8000), *[alert(f"Bulk{i}", app="cart") for i in range(120)])
    async with running_responder(config) as running:
        await running.services.store.read(lambda r: r.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        filler = small_fs / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        os.truncate(filler, filler.stat().st_size - 48 * 1024)  # room for a tiny write, not for a notification
        status, body, _ = await post(running, big)
        assert (status, body["error"]) == (503, "store_unavailable")
        status, ready = await readyz(running)
        assert status == 503 and ready["checks"]["inbox"].startswith("failing"), ready
        filler.unlink()
        status, ready = await readyz(running)
        assert status == 200, ready
        status, body, _ = await post(running, big)
        assert status == 200, body
