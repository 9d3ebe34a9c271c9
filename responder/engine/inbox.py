"""The engine's intake: the queue of accepted events waiting to be decided, and (several replicas on the shared
store) the watch for events the other replicas accepted.

An event is queued at most once, from whichever way it arrives (this replica's own webhook, the store's signal
that another replica committed a notification, the periodic look at everything undecided, the load after a
start), and stays known until its decision is recorded, so none of those ways can queue it a second time while it
is being decided. Timer ticks (``poke``) go through the same queue, so a tick is never lost behind a busy batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from responder.core.model import AlertEvent
from responder.store import Store

Queued = tuple[AlertEvent, float] | None  # an event and when it was received; None: a timer tick
_BATCH = 256


class Inbox:
    def __init__(self, store: Store, *, poll_s: float) -> None:
        self.store, self.poll_s = store, poll_s
        self.reset()
        self._wake = asyncio.Event()
        self._signalled: set[int] = set()

    def reset(self) -> None:
        self._queue: asyncio.Queue[Queued] = asyncio.Queue()
        self.known: set[int] = set()  # ids queued or being decided, until their decisions are recorded
        self.open = 0  # queued items (events and ticks) whose decisions are not recorded yet

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def add(self, event: AlertEvent, received_at: float) -> None:
        if event.event_id in self.known:
            return
        self.known.add(event.event_id)
        self.open += 1
        self._queue.put_nowait((event, received_at))

    def poke(self) -> None:
        self.open += 1
        self._queue.put_nowait(None)

    async def take(self, wait_s: float | None) -> list[tuple[AlertEvent, float]]:
        """The next batch (up to 256 items, waiting up to ``wait_s`` for the first); [] for a timeout or ticks."""
        found: list[Queued] = []
        try:
            found.append(await asyncio.wait_for(self._queue.get(), wait_s))
        except TimeoutError:
            return []
        while not self._queue.empty() and len(found) < _BATCH:
            found.append(self._queue.get_nowait())
        batch = [item for item in found if item is not None]
        self.open -= len(found) - len(batch)  # the ticks taken
        return batch

    def recorded(self, batch: Sequence[tuple[AlertEvent, float]]) -> None:
        """The decisions about ``batch`` are recorded: its events are done."""
        self.known.difference_update(event.event_id for event, _ in batch)
        self.open -= len(batch)

    # -- several replicas: what the others accepted --

    def signal(self, notification_id: int) -> None:
        """The shared store says a notification was committed (0: look at everything undecided)."""
        self._signalled.add(notification_id)
        self._wake.set()

    async def watch(self) -> None:
        """Queue the events other replicas accepted: on each signal from the store, and every ``poll_s`` in case a
        signal was lost (the listening connection dropped)."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                self._signalled.add(0)
            self._wake.clear()
            wanted, self._signalled = self._signalled, set()
            for notification_id in sorted(wanted - {0}):
                for event, received_at in await self.store.undecided_events(notification_id=notification_id):
                    self.add(event, received_at)
            if 0 in wanted and any(i not in self.known for i in await self.store.undecided_ids()):
                for event, received_at in await self.store.undecided_events():
                    self.add(event, received_at)
