"""Leader election on a Kubernetes Lease, with acting bounded by certainty rather than by hope.

Written on kubernetes_asyncio's CoordinationV1Api instead of its LeaderElection helper, because the responder needs
three things that helper does not give:

- **Certainty.** The leader knows until when its leadership is valid, on its own monotonic clock: from the moment
  it *sent* its last successful renewal, plus the lease duration, minus a safety margin for clock drift. Before
  every mutation the engine asks :meth:`LeaderElector.certain`; a watchdog steps down as soon as it expires. A
  replica frozen (SIGSTOP, a long GC or VM pause) past its lease wakes up uncertain and changes nothing more.
- **Release on shutdown.** :meth:`LeaderElector.release` clears the holder, so the next replica takes over within
  one retry period instead of waiting out a whole lease.
- **One holder per process.** The Lease's holderIdentity is the configured identity plus a random instance suffix:
  two replicas given the same identity never both believe they hold the Lease, and a restarted replica waits for
  its predecessor's lease to expire instead of taking it back at once.

The others judge expiry as client-go does: by when *they* last saw the Lease record change (their own monotonic
clock), never by comparing another machine's renewTime with their own wall clock. Every update carries the
resourceVersion read, so two candidates racing for an expired Lease cannot both win (one gets 409).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from responder.adapters.kube_imports import lazy_client
from responder.health import Health

lazy_client()  # before the library's first import: load only the API classes and models used here

from kubernetes_asyncio.client import ApiClient, CoordinationV1Api  # noqa: E402
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: E402

log = logging.getLogger("responder.leader")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseSettings:
    name: str
    namespace: str
    identity: str
    lease_duration_s: int = 15  # the Lease object stores whole seconds
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    @property
    def margin_s(self) -> float:
        """Subtracted from the lease duration for certainty: clock-rate drift between nodes, and the time between
        checking certainty and the mutation reaching the API server."""
        return max(1.0, 0.15 * self.lease_duration_s)


@dataclass(frozen=True, slots=True)
class _Seen:
    holder: str
    renew_time: Any
    transitions: int
    resource_version: str


class LeaderElector:
    """Campaigns for ever. ``on_start`` runs when this replica becomes leader (with the Lease held and certain);
    ``on_stop(reason)`` when it stops leading, for whatever reason (said truthfully in the log)."""

    def __init__(
        self,
        api_client: ApiClient,
        lease: LeaseSettings,
        *,
        instance: str,
        on_start: Callable[[], Awaitable[None]],
        on_stop: Callable[[str], Awaitable[None]],
        health: Health | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = CoordinationV1Api(api_client)
        self.lease = lease
        self.holder = f"{lease.identity}_{instance}"
        self._on_start, self._on_stop = on_start, on_stop
        self._health = health
        self._monotonic = monotonic
        self._leading = False
        self._valid_until = 0.0
        self._renewed_at = 0.0  # monotonic: when the last successful renewal was sent
        self._seen: _Seen | None = None
        self._seen_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._transition = asyncio.Lock()  # start and stop never interleave
        self.observed_holder: str | None = None  # who holds the Lease, as last read
        self.campaigning = True  # False: stay a follower (a duplicate identity was found)

    # -- what the rest asks --

    def certain(self) -> bool:
        """Leading, and the Lease cannot have passed to anyone else yet."""
        return self._leading and self._monotonic() < self._valid_until

    @property
    def is_leader(self) -> bool:
        return self.certain()

    # -- lifecycle --

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._campaign(), name="leader-election"),
            asyncio.create_task(self._watchdog(), name="leader-watchdog"),
        ]

    async def stop(self) -> None:
        """Stop campaigning; if leading, stop acting and release the Lease (the next replica takes over within one
        retry period)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._leading:
            await self._step_down("shutting down")
            await self.release()

    async def release(self) -> None:
        """Give the Lease up now (only if still ours): clear the holder and make it expire at once."""
        try:
            lease = await self._api.read_namespaced_lease(self.lease.name, self.lease.namespace)
            spec = lease.spec
            if spec is None or spec.holder_identity != self.holder:
                return
            body = self._body(lease.metadata.resource_version, holder=None, transitions=spec.lease_transitions or 0)
            body["spec"]["leaseDurationSeconds"] = 1
            await self._api.replace_namespaced_lease(self.lease.name, self.lease.namespace, body)
            log.warning("%s released the lease %s/%s", self.holder, self.lease.namespace, self.lease.name)
        except (TimeoutError, ApiException, OSError) as exc:
            log.error("could not release the lease (%s); the next leader waits for it to expire", _brief(exc))

    # -- the campaign --

    async def _campaign(self) -> None:
        while True:
            started = self._monotonic()
            try:
                await self._round(started)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server may be unreachable for a while: keep campaigning
                if self._leading:
                    log.error("could not renew the lease: %s", _brief(exc))
                    if self._monotonic() - self._renewed_at > self.lease.renew_deadline_s:
                        await self._step_down(f"could not renew the lease for {self.lease.renew_deadline_s:g}s")
                elif self._health is not None and not isinstance(exc, ApiException | OSError | TimeoutError):
                    self._health.crashed("leader-election", exc)
                else:
                    log.warning("leader election: %s", _brief(exc))
            pause = self.lease.retry_period_s * (1.0 if self._leading else random.uniform(0.9, 1.1))
            await asyncio.sleep(max(0.0, pause - (self._monotonic() - started)))

    async def _round(self, started: float) -> None:
        lease = await self._read()
        if lease is None:
            if self.campaigning:
                await self._create(started)
            return
        spec, rv = lease.spec, lease.metadata.resource_version
        holder = (spec.holder_identity if spec is not None else None) or ""
        transitions = (spec.lease_transitions if spec is not None else None) or 0
        self.observed_holder = holder or None
        if holder == self.holder:
            await self._renew(rv, transitions, started)
            return
        if self._leading:
            await self._step_down(f"another replica holds the lease now ({holder or 'nobody'})")
        seen = _Seen(holder, spec.renew_time if spec is not None else None, transitions, rv)
        if seen != self._seen:
            self._seen, self._seen_at = seen, started
        duration = (spec.lease_duration_seconds if spec is not None else None) or self.lease.lease_duration_s
        if self.campaigning and (not holder or started > self._seen_at + duration):
            await self._take(rv, transitions + 1, started, previous=holder)

    async def _read(self) -> Any:
        try:
            return await self._api.read_namespaced_lease(self.lease.name, self.lease.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def _create(self, started: float) -> None:
        body = self._body(None, holder=self.holder, transitions=0, acquired=True)
        try:
            await self._api.create_namespaced_lease(self.lease.namespace, body)
        except ApiException as exc:
            if exc.status == 409:  # another replica created it first
                return
            raise
        await self._became_leader(started, previous=None)

    async def _take(self, rv: str, transitions: int, started: float, *, previous: str) -> None:
        body = self._body(rv, holder=self.holder, transitions=transitions, acquired=True)
        try:
            await self._api.replace_namespaced_lease(self.lease.name, self.lease.namespace, body)
        except ApiException as exc:
            if exc.status == 409:  # someone else took it (or renewed) since our read
                return
            raise
        await self._became_leader(started, previous=previous or None)

    async def _renew(self, rv: str, transitions: int, started: float) -> None:
        body = self._body(rv, holder=self.holder, transitions=transitions)
        try:
            await self._api.replace_namespaced_lease(self.lease.name, self.lease.namespace, body)
        except ApiException as exc:
            if exc.status == 409:  # changed since our read: look again next round
                return
            raise
        if not self._leading:  # still ours (e.g. after a step-down on a late renewal): lead again
            await self._became_leader(started, previous=self.holder)
            return
        self._renewed(started)

    def _renewed(self, sent_at: float) -> None:
        self._renewed_at = sent_at
        self._valid_until = sent_at + self.lease.lease_duration_s - self.lease.margin_s

    async def _became_leader(self, started: float, *, previous: str | None) -> None:
        async with self._transition:
            self._renewed(started)
            self._leading = True
            self.observed_holder = self.holder
            log.warning(
                "%s is now the leader of lease %s/%s (previous holder: %s)",
                self.holder,
                self.lease.namespace,
                self.lease.name,
                previous or "none",
            )
            try:
                await self._on_start()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._leading = False
                if self._health is not None:
                    self._health.crashed("leader-start", exc)
                await self._on_stop(f"could not start leading: {type(exc).__name__}")
                await self.release()

    async def _step_down(self, reason: str) -> None:
        async with self._transition:
            if not self._leading:
                return
            self._leading = False
            self._valid_until = 0.0
            log.error("%s stops leading: %s; no more actions from this replica", self.holder, reason)
            await self._on_stop(reason)

    async def step_down(self, reason: str) -> None:
        """Stop leading now (the engine found itself fenced or uncertain); the Lease expires or is taken over."""
        await self._step_down(reason)

    async def _watchdog(self) -> None:
        """Step down the moment certainty runs out, whatever the campaign loop is doing (it may be stuck in a
        request, or the whole process may just have been resumed after a pause)."""
        while True:
            await asyncio.sleep(0.2)
            if self._leading and self._monotonic() >= self._valid_until:
                late = self._monotonic() - self._renewed_at
                await self._step_down(f"leadership no longer certain: last renewal sent {late:.1f}s ago")

    def _body(
        self, resource_version: str | None, *, holder: str | None, transitions: int, acquired: bool = False
    ) -> Any:  # a Lease as JSON: the client sends a dict as it is
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec: dict[str, Any] = {
            "holderIdentity": holder,
            "leaseDurationSeconds": self.lease.lease_duration_s,
            "leaseTransitions": transitions,
            "renewTime": now,
        }
        if acquired:
            spec["acquireTime"] = now
        metadata: dict[str, Any] = {"name": self.lease.name, "namespace": self.lease.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"[:200]
