"""The Lease elector against the emulated API server: certainty on the monotonic clock, release on shutdown, one
holder per process (even with one identity), and how a follower judges expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from responder.adapters.kube import KubeCluster, open_cluster
from responder.adapters.leader import LeaderElector, LeaseSettings
from responder.testing.emulator import Emulator, run_emulator

LEASE = LeaseSettings(
    name="canary-responder",
    namespace="canary-system",
    identity="replica",
    lease_duration_s=3,
    renew_deadline_s=2.0,
    retry_period_s=0.5,
)


class Clock:
    """A monotonic clock a test can move forward (a process frozen by SIGSTOP sees exactly such a jump)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


class Recorder:
    def __init__(self) -> None:
        self.started = 0
        self.stopped: list[str] = []

    async def on_start(self) -> None:
        self.started += 1

    async def on_stop(self, reason: str) -> None:
        self.stopped.append(reason)


@pytest.fixture
async def api() -> AsyncIterator[tuple[Emulator, KubeCluster]]:
    async with run_emulator() as (emulator, url):
        cluster = await open_cluster(host=url, request_timeout_s=2)
        try:
            yield emulator, cluster
        finally:
            await cluster.close()


def elector(cluster: KubeCluster, instance: str, recorder: Recorder, clock: Clock | None = None) -> LeaderElector:
    return LeaderElector(
        cluster.api_client(),
        LEASE,
        instance=instance,
        on_start=recorder.on_start,
        on_stop=recorder.on_stop,
        monotonic=clock or time.monotonic,
    )


async def leader_and_follower(
    cluster: KubeCluster,
) -> tuple[LeaderElector, LeaderElector, Recorder, Recorder]:
    """Two electors: the first leads, the second has campaigned for a while (it has seen the Lease)."""
    first, second = Recorder(), Recorder()
    a, b = elector(cluster, "aaaa", first), elector(cluster, "bbbb", second)
    a.start()
    await until(a.certain, "the first to lead")
    b.start()
    await asyncio.sleep(0.6)
    return a, b, first, second


async def until(predicate: Callable[[], bool], what: str, within: float = 8.0) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_one_process_leads_even_when_both_have_the_same_identity(api: tuple[Emulator, KubeCluster]) -> None:
    emulator, cluster = api
    first, second = Recorder(), Recorder()
    a, b = elector(cluster, "aaaa", first), elector(cluster, "bbbb", second)
    a.start()
    try:
        await until(a.certain, "the first to lead")
        b.start()
        await asyncio.sleep(1.5)  # three retry periods
        assert a.certain() and not b.certain()
        lease = emulator.get_object("coordination.k8s.io/v1/leases", "canary-system", "canary-responder")
        assert lease["spec"]["holderIdentity"] == "replica_aaaa"
        assert (first.started, second.started) == (1, 0)
    finally:
        await b.stop()
        await a.stop()


async def test_release_hands_the_lease_over_within_one_retry_period(api: tuple[Emulator, KubeCluster]) -> None:
    emulator, cluster = api
    a, b, first, _ = await leader_and_follower(cluster)
    await a.stop()  # shutting down: steps down, then releases
    took = await until(b.certain, "the second to take over")
    try:
        assert took < LEASE.retry_period_s * 1.1 + 0.5, took  # not a whole lease duration
        assert first.stopped == ["shutting down"]
        lease = emulator.get_object("coordination.k8s.io/v1/leases", "canary-system", "canary-responder")
        assert lease["spec"]["holderIdentity"] == "replica_bbbb"
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        await b.stop()


async def test_certainty_ends_with_a_jump_of_the_monotonic_clock_and_the_leader_steps_down(
    api: tuple[Emulator, KubeCluster],
) -> None:
    _, cluster = api
    clock, recorder = Clock(), Recorder()
    a = elector(cluster, "aaaa", recorder, clock)
    a.start()
    try:
        await until(a.certain, "to lead")
        clock.offset = LEASE.lease_duration_s  # as if frozen for a whole lease: not certain at once
        assert not a.certain()
        await until(lambda: bool(recorder.stopped), "the watchdog to step down", within=2)
        assert "no longer certain" in recorder.stopped[0]
        # The Lease is still its own (nobody else campaigns): it renews and leads again, from a fresh start.
        await until(a.certain, "to lead again")
        assert recorder.started == 2
    finally:
        await a.stop()


async def test_a_leader_that_cannot_renew_for_the_renew_deadline_steps_down(api: tuple[Emulator, KubeCluster]) -> None:
    emulator, cluster = api
    recorder = Recorder()
    a = elector(cluster, "aaaa", recorder)
    a.start()
    try:
        await until(a.certain, "to lead")
        emulator.add_fault(method="PUT", path_contains="/leases/", status=500, times=None)
        await until(lambda: bool(recorder.stopped), "to step down", within=LEASE.lease_duration_s + 1)
        assert not a.certain()
        assert any(s.startswith(("could not renew", "leadership no longer certain")) for s in recorder.stopped)
    finally:
        emulator.clear_faults()
        await a.stop()


async def test_a_follower_waits_out_a_lease_whose_holder_vanished(api: tuple[Emulator, KubeCluster]) -> None:
    """Expiry is judged by when the follower last saw the record change, on its own clock."""
    _, cluster = api
    a, b, _, _ = await leader_and_follower(cluster)
    for task in a._tasks:  # the holder dies without releasing (SIGKILL): its renewals stop
        task.cancel()
    gone = time.monotonic()
    await until(b.certain, "the follower to take the expired lease", within=LEASE.lease_duration_s + 2)
    try:
        waited = time.monotonic() - gone
        assert waited >= LEASE.lease_duration_s - 1.0, waited  # it did wait for the lease to run out
    finally:
        await b.stop()
