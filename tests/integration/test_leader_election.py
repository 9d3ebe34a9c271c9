"""High availability with two real replicas against one emulated API server: one Lease, one actor.

The follower is not ready and answers webhooks 503 (Alertmanager retries, never a silent accept); when the leader
goes away the follower takes the lease and acts; a leader that cannot renew stops acting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from support import Running, alert, notification, running_responder, write_config

from responder.testing.emulator import Emulator

pytestmark = pytest.mark.slow

ELECTION = {
    "enabled": True,
    "lease_name": "canary-responder",
    "namespace": "canary-system",
    "lease_duration": "3s",
    "renew_deadline": "2s",
    "retry_period": "1s",
}


def config(tmp_path: Path, name: str, kube_url: str) -> Path:
    home = tmp_path / name
    home.mkdir()
    return write_config(home, kube_url=kube_url, leader_election={**ELECTION, "identity": name})


async def eventually(predicate: Callable[[], bool], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def ready(running: Running) -> int:
    async with running.session.get(f"{running.url}/readyz") as response:
        return response.status


async def test_one_leader_acts_and_the_follower_takes_over(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_responder(config(tmp_path, "replica-a", url)))
        await eventually(a.services.is_leader, "replica-a to lead")
        b_stack = AsyncExitStack()
        b = await b_stack.enter_async_context(running_responder(config(tmp_path, "replica-b", url)))
        await asyncio.sleep(2.5)  # several retry periods: b must stay a follower
        assert a.services.is_leader() and not b.services.is_leader()
        assert (await ready(a), await ready(b)) == (200, 503)
        response = await b.post_alerts(notification(alert()))
        body = await response.json()
        assert (response.status, body["error"]) == (503, "not_leader")
        assert await b.services.store.rollbacks() == []
        lease = emulator.get_object("coordination.k8s.io/v1/leases", "canary-system", "canary-responder")
        assert lease["spec"]["holderIdentity"] == "replica-a"

        await stack.aclose()  # the leader goes away (without releasing: the lease must expire)
        await eventually(b.services.is_leader, "replica-b to take over")
        assert (await b.post_alerts(notification(alert()))).status == 200
        await b.services.engine.drain()
        [record] = await b.services.store.rollbacks()
        assert record.status == "done"
        await b_stack.aclose()


async def test_a_leader_that_cannot_renew_stops_acting(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    async with running_responder(config(tmp_path, "replica-a", url)) as a:
        await eventually(a.services.is_leader, "replica-a to lead")
        emulator.add_fault(method="PUT", path_contains="/leases/", status=500, times=None)
        await eventually(lambda: not a.services.is_leader(), "replica-a to step down", within=10)
        response = await a.post_alerts(notification(alert()))
        assert response.status == 503
        assert await ready(a) == 503
        emulator.clear_faults()
        await eventually(a.services.is_leader, "replica-a to lead again")
        assert (await a.post_alerts(notification(alert()))).status == 200
        await a.services.engine.drain()
        assert [r.status for r in await a.services.store.rollbacks()] == ["done"]
