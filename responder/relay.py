"""The delivery loop shared by the durable relays (the Slack outbox, the GitOps webhook): rows are written by
a notice hook inside the transaction that records a fact, and a worker task delivers whatever is due.

A hook runs on the store's thread, so it wakes the worker with :meth:`DueWorker.wake_threadsafe`; the worker
otherwise sleeps until the next row is due. A database outage pauses delivery, never the rollback path.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable

from responder.health import Health
from responder.store import Fenced, StoreUnavailable

log = logging.getLogger("responder.relay")


class DueWorker(abc.ABC):
    """Subclasses implement :meth:`deliver_due` (try what is due now, return how many) and :meth:`next_due`."""

    name = "relay"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.health: Health | None = None  # set by the application: crashes of a round are reported there
        # The leadership term its writes carry (several replicas: only the leader delivers, and a deposed one's
        # records are refused by the shared store; the next leader delivers what stayed pending).
        self.term: Callable[[], int | None] = lambda: None
        self.wanted = False  # whether there is anything to deliver to (set by the subclass's start)
        self.stopping = False  # set by a graceful stop: finish the delivery in hand, start no other

    @abc.abstractmethod
    async def deliver_due(self) -> int:
        """Try every row due now once; return how many were tried."""

    @abc.abstractmethod
    async def next_due(self) -> float | None:
        """When the next pending row is due (a clock() value), or None."""

    async def after_round(self) -> None:  # noqa: B027 - an optional hook, deliberately a no-op by default
        """Called after each delivery round (e.g. to refresh gauges)."""

    def wake_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def bind_loop(self) -> None:
        self._loop = asyncio.get_running_loop()

    def start_worker(self) -> None:
        self.bind_loop()
        if self.wanted and self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self.name}-worker")

    async def stop_worker(self, grace_s: float = 0.0) -> None:
        """Stop delivering. With ``grace_s`` (SIGTERM, a rolling update) the delivery in hand may finish and be
        recorded first: cancelling it mid-request would make the next process send it again (only a crash may)."""
        if self._task is None:
            return
        self.stopping = True
        self._wake.set()
        if grace_s > 0:
            await asyncio.wait({self._task}, timeout=grace_s)
            if not self._task.done():
                log.warning("%s: a delivery still under way after %gs is cut short", self.name, grace_s)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task, self.stopping = None, False

    async def idle(self, within: float = 10.0) -> None:
        """Wait until nothing is due now (tests)."""
        deadline = time.monotonic() + within
        while True:
            due = await self.next_due()
            if due is None or due > self.clock():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not drain in time")
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while not self.stopping:
            self._wake.clear()
            try:
                sent = await self.deliver_due()
                await self.after_round()
            except StoreUnavailable as exc:
                log.error("%s: database unavailable (%s); retrying", self.name, exc)
                await asyncio.sleep(1.0)
                continue
            except Fenced as exc:  # deposed: the new leader delivers; this worker is about to be stopped
                log.warning("%s: not the leader any more (%s); delivery stops here", self.name, exc)
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:  # a bug in a round: loud and counted; the worker goes on after a pause
                (self.health or Health()).crashed(self.name, exc)
                await asyncio.sleep(1.0)
                continue
            if sent or self.stopping:
                continue
            due = await self.next_due()
            timeout = None if due is None else max(0.01, due - self.clock())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
