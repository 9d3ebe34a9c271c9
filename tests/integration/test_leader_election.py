"""High availability with two in-process replicas on one PostgreSQL and one emulated API server: one Lease, one actor.

Both replicas are ready and take webhooks (into the shared inbox); only the leader decides and acts, whichever
replica received the alert; when the leader goes away the follower takes the Lease and acts on what is pending; a
leader that cannot renew stops acting (and leads again, from the shared state, once it can). The process-level
attacks (SIGKILL, SIGSTOP, SIGTERM, three replicas) are in tests/ha/."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from ha.harness import LEASE
from support import Running, alert, notification, running_responder, write_config

from responder.config import ConfigError, load_settings
from responder.testing.emulator import Emulator

pytestmark = pytest.mark.slow

ELECTION = LEASE  # the tests' short election timings (lease 3 s, renew 2 s, retry 1 s)


def config(tmp_path: Path, name: str, kube_url: str, dsn: str) -> Path:
    home = tmp_path / name
    home.mkdir()
    (home / "dsn").write_text(dsn)
    storage = {"backend": "postgres", "postgres": {"dsn": {"file": str(home / "dsn")}, "poll_interval": "1s"}}
    return write_config(home, kube_url=kube_url, leader_election={**ELECTION, "identity": name}, storage=storage)


async def eventually(predicate: Callable[[], bool], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def ready(running: Running) -> int:
    async with running.session.get(f"{running.url}/readyz") as response:
        return response.status


async def test_one_leader_acts_on_what_either_replica_took_and_the_follower_takes_over(
    tmp_path: Path, cluster: tuple[Emulator, str], postgres_dsn: str
) -> None:
    emulator, url = cluster
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_responder(config(tmp_path, "replica-a", url, postgres_dsn)))
        await eventually(a.services.is_leader, "replica-a to lead")
        b_stack = AsyncExitStack()
        b = await b_stack.enter_async_context(running_responder(config(tmp_path, "replica-b", url, postgres_dsn)))
        await asyncio.sleep(2.5)  # several retry periods: b must stay a follower
        assert a.services.is_leader() and not b.services.is_leader()
        assert (await ready(a), await ready(b)) == (200, 200)  # every replica takes traffic
        response = await b.post_alerts(notification(alert()))
        assert response.status == 200, await response.text()  # the follower stores it; the leader acts on it
        await eventually(
            lambda: emulator.get_object("apps/v1/deployments", "shop", "checkout-canary")["spec"]["replicas"] == 0,
            "the leader to roll back what the follower took",
        )
        lease = emulator.get_object("coordination.k8s.io/v1/leases", "canary-system", "canary-responder")
        assert lease["spec"]["holderIdentity"].startswith("replica-a_")
        [record] = await b.services.store.rollbacks()  # the one shared state, seen from the follower
        assert record.status == "done"

        await stack.aclose()  # the leader shuts down: it releases the Lease
        await eventually(b.services.is_leader, "replica-b to take over", within=5)
        payments = notification(alert(app="payments"))
        assert (await b.post_alerts(payments)).status == 200
        await b.services.engine.drain()
        assert sorted(r.status for r in await b.services.store.rollbacks()) == ["done", "done"]
        await b_stack.aclose()


async def test_a_leader_that_cannot_renew_stops_acting_and_leads_again_from_the_shared_state(
    tmp_path: Path, cluster: tuple[Emulator, str], postgres_dsn: str
) -> None:
    emulator, url = cluster
    async with running_responder(config(tmp_path, "replica-a", url, postgres_dsn)) as a:
        await eventually(a.services.is_leader, "replica-a to lead")
        emulator.add_fault(method="PUT", path_contains="/leases/", status=500, times=None)
        await eventually(lambda: not a.services.is_leader(), "replica-a to step down", within=10)
        response = await a.post_alerts(notification(alert()))
        assert response.status == 200  # stored in the shared inbox, not acted on by a replica that does not lead
        await asyncio.sleep(1.0)
        assert emulator.get_object("apps/v1/deployments", "shop", "checkout-canary")["spec"]["replicas"] == 2
        emulator.clear_faults()
        await eventually(a.services.is_leader, "replica-a to lead again")
        await eventually(
            lambda: emulator.get_object("apps/v1/deployments", "shop", "checkout-canary")["spec"]["replicas"] == 0,
            "the alert taken while not leading to be acted on",
        )


def test_leader_election_on_sqlite_is_refused_with_a_pointer_to_postgres(tmp_path: Path) -> None:
    path = write_config(tmp_path, leader_election={**ELECTION, "identity": "a"})
    with pytest.raises(ConfigError, match=r"storage.backend: postgres"):
        load_settings(path, {})
