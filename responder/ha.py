"""Several replicas on the shared store: who leads, and what leading starts and stops.

Every replica takes webhooks (it commits them to the shared inbox) and serves the operator API; operator requests
that act are forwarded to the leader. One replica leads: the holder of the Kubernetes Lease
(:mod:`responder.adapters.leader`). Taking over, it first takes a new *term* from the database (which fences every
record of the previous leader from then on), then loads the decision state and the pending work from the shared
store, then decides and acts, every record carrying its term and every mutation checked against its certainty
(:mod:`responder.engine.leadership`). Stepping down (lost Lease, uncertainty, a fenced write) stops everything at
once. Shutting down (SIGTERM) lets the rollbacks under way finish for a short grace period, records the rest as
interrupted, then releases the Lease so that the next replica takes over within one retry period.

Each replica also heartbeats into the store's replica registry: that is where a follower finds the leader's
address, and how two live replicas configured with the same identity are found (the later one refuses to lead and
reports not-ready until the earlier one is gone).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from responder.adapters.leader import LeaderElector, LeaseSettings
from responder.engine import Engine
from responder.engine.leadership import DEPOSED, Authority
from responder.health import Health
from responder.relay import DueWorker
from responder.store import ReplicaRow, Store, StoreUnavailable

log = logging.getLogger("responder.leader")

FORWARDED = "X-Canary-Responder-Forwarded"


def advertise_url(configured: str | None, port: int) -> str:
    """Where the other replicas reach this one: the setting, else the pod's IP, else the host name."""
    if configured:
        return configured.rstrip("/")
    host = os.environ.get("POD_IP") or socket.gethostname()
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


class Replication:
    def __init__(
        self,
        *,
        store: Store,
        api_client: Any,
        lease: LeaseSettings,
        url: str,
        health: Health,
        shutdown_grace_s: float = 10.0,
    ) -> None:
        self.store, self.lease, self.url, self.health = store, lease, url, health
        self.shutdown_grace_s = shutdown_grace_s
        self.instance = secrets.token_hex(4)
        self.elector = LeaderElector(
            api_client, lease, instance=self.instance, on_start=self._lead, on_stop=self._follow, health=health
        )
        self.authority = Authority(certain=self.elector.certain)
        self.authority.on_lost = self._lost
        self.engine: Engine | None = None
        self.workers: Sequence[DueWorker] = ()
        self.duplicate: ReplicaRow | None = None
        self.stopping = False
        self._replicas: list[ReplicaRow] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def attach(self, engine: Engine, workers: Sequence[DueWorker]) -> None:
        """What leading runs: the engine (built with :attr:`authority`) and the delivery workers."""
        self.engine, self.workers = engine, workers
        for worker in workers:
            worker.term = lambda: self.authority.term

    # -- lifecycle --

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900, sock_connect=5))
        await self._beat()
        self._tasks.append(asyncio.create_task(self._heartbeats(), name="replica-heartbeat"))
        self.elector.start()

    async def stop(self) -> None:
        """SIGTERM: not ready at once; the leader lets its rollbacks finish (grace period), records the rest as
        interrupted, stops, and releases the Lease."""
        self.stopping = True
        if self.engine is not None and self.authority.may_act():
            log.warning("shutting down: finishing the work under way (up to %gs each)", self.shutdown_grace_s)
            await self.engine.stop(grace_s=self.shutdown_grace_s, why="shutting down")
            for worker in self.workers:  # the deliveries in hand finish and are recorded while the term holds
                await worker.stop_worker(self.shutdown_grace_s)
        await self.elector.stop()  # steps down if leading, then releases the Lease
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self.store.forget_replica(self.instance), 2.0)
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("could not remove this replica from the registry: %s", exc)
        if self._session is not None:
            await self._session.close()

    # -- leading --

    async def _lead(self) -> None:
        assert self.engine is not None
        term = await self.store.take_leadership(self.elector.holder)
        self.authority.term = term
        log.warning("%s leads with term %d", self.elector.holder, term)
        await self.engine.start()
        for worker in self.workers:
            worker.start_worker()

    async def _follow(self, reason: str) -> None:
        self.authority.term = DEPOSED  # first: nothing recorded from here on, whatever is still in flight
        for worker in self.workers:
            await worker.stop_worker()
        if self.engine is not None:
            await self.engine.stop(why=reason)

    def _lost(self, why: str) -> None:
        if self.elector.certain() or self.authority.term != DEPOSED:
            task = asyncio.get_running_loop().create_task(self.elector.step_down(why), name="step-down")
            self._tasks.append(task)

    # -- the replica registry --

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.lease.retry_period_s)
            try:
                await self._beat()
            except StoreUnavailable as exc:
                log.warning("replica heartbeat not written: %s", exc)
            except Exception as exc:
                self.health.crashed("replica-heartbeat", exc)

    async def _beat(self) -> None:
        term = self.authority.term if self.authority.may_act() else None
        await self.store.heartbeat(instance=self.instance, identity=self.lease.identity, url=self.url, leader_term=term)
        self._replicas = await self.store.replicas()
        await self._check_duplicate(self._replicas)

    async def _check_duplicate(self, rows: Sequence[ReplicaRow]) -> None:
        me = next((r for r in rows if r.instance == self.instance), None)
        if me is None:
            return
        earlier = [
            r
            for r in rows
            if r.identity == me.identity
            and r.instance != me.instance
            and r.now - r.seen_at < self.lease.lease_duration_s
            and (r.started_at, r.instance) < (me.started_at, me.instance)
        ]
        if earlier and self.duplicate is None:
            self.duplicate = earlier[0]
            log.error(
                "another live replica (instance %s at %s) uses the identity %r: this one will not lead and reports"
                " not ready; give each replica its own leader_election.identity (default: the pod name)",
                earlier[0].instance,
                earlier[0].url,
                me.identity,
            )
            self.elector.campaigning = False
            await self.elector.step_down("duplicate identity")
        elif not earlier and self.duplicate is not None:
            log.warning("identity %r is this replica's alone again; campaigning", me.identity)
            self.duplicate = None
            self.elector.campaigning = True

    # -- what the HTTP face asks (responder.http.runtime.Leadership) --

    def is_leader(self) -> bool:
        return self.authority.may_act()

    def ready_problem(self) -> str | None:
        if self.stopping:
            return "shutting down"
        if self.duplicate is not None:
            return (
                f"duplicate identity {self.lease.identity!r}: instance {self.duplicate.instance} at"
                f" {self.duplicate.url} uses it too"
            )
        return None

    def status(self) -> dict[str, Any]:
        leader = self.is_leader()
        return {
            "mode": "replicated",
            "leader": leader,
            "identity": self.lease.identity,
            "instance": self.instance,
            "holder": self.elector.observed_holder,
            "term": self.authority.term if leader else None,
            "replicas": [
                {
                    "identity": r.identity,
                    "instance": r.instance,
                    "url": r.url,
                    "seen_seconds_ago": round(max(0.0, r.now - r.seen_at), 1),
                    "leader_term": r.leader_term,
                }
                for r in self._replicas
            ],
        }

    async def forward(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        url = await self._leader_url()
        if url is None or self._session is None:
            return None
        sent = {**headers, FORWARDED: self.instance}
        started = time.monotonic()
        try:
            async with self._session.request(method, url + path, headers=sent, data=body) as response:
                content = await response.read()
                kept = {k: v for k, v in response.headers.items() if k in ("Content-Type", "Retry-After")}
                return response.status, {**kept, "X-Canary-Responder-Served-By": url}, content
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not reach the leader at %s after %.1fs: %s", url, time.monotonic() - started, exc)
            return None

    async def _leader_url(self) -> str | None:
        _, holder = await self.store.leadership()
        if holder is None:
            return None
        for row in await self.store.replicas():
            fresh = row.now - row.seen_at < self.lease.lease_duration_s
            if fresh and f"{row.identity}_{row.instance}" == holder and row.instance != self.instance:
                return row.url
        return None
