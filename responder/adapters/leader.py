"""High availability: Kubernetes Lease leader election (kubernetes_asyncio's LeaseLock), nothing home-made.

Only the leader runs the engine (decides and acts). A follower reports not-ready, so the Service sends webhooks to
the leader, and answers any webhook that still reaches it with 503 so that Alertmanager retries: a follower never
accepts work it would leave unprocessed. When renewing the lease fails for ``renew_deadline`` the library cancels
the leading task and calls ``on_stop``: the engine stops at once (its lanes are cancelled; their steps are
idempotent and re-checked, so the next leader finishes the job safely).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from responder.health import Health

log = logging.getLogger("responder.leader")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseSettings:
    name: str
    namespace: str
    identity: str
    lease_duration_s: int = 15  # the Lease object stores whole seconds
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0


class LeaderElector:
    """Runs the election for ever; ``is_leader`` says whether this replica may act right now."""

    def __init__(
        self,
        api_client: ApiClient,
        lease: LeaseSettings,
        *,
        on_start: Callable[[], Awaitable[None]],
        on_stop: Callable[[], Awaitable[None]],
        health: Health | None = None,
    ) -> None:
        self._api = api_client
        self._lease = lease
        self._on_start = on_start
        self._on_stop = on_stop
        self.is_leader = False
        self._task: asyncio.Task[None] | None = None
        self._health = health

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="leader-election")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.is_leader:
            await self._stopped()

    async def _run_forever(self) -> None:
        lease = self._lease
        while True:
            lock = LeaseLock(lease.name, lease.namespace, lease.identity, self._api)
            config = electionconfig.Config(
                lock,
                lease.lease_duration_s,
                lease.renew_deadline_s,
                lease.retry_period_s,
                onstarted_leading=self._started,
                onstopped_leading=self._stopped,
            )
            try:
                await leaderelection.LeaderElection(config).run()  # returns when leadership is lost
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server may be unreachable for a while: keep campaigning
                if self._health is not None:
                    self._health.crashed("leader-election", exc)
                else:
                    log.exception("leader election failed; retrying")
            await asyncio.sleep(lease.retry_period_s)

    async def _started(self) -> None:
        log.warning(
            "%s is now the leader of lease %s/%s", self._lease.identity, self._lease.namespace, self._lease.name
        )
        await self._on_start()  # webhooks are taken only once the engine has loaded its state
        self.is_leader = True

    async def _stopped(self) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        log.warning(
            "%s lost the lease %s/%s; stopping all actions",
            self._lease.identity,
            self._lease.namespace,
            self._lease.name,
        )
        await self._on_stop()
