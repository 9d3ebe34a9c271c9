"""The engine's intake: the queue of accepted events waiting to be decided, and (several replicas on the shared
store) the watch for events the other replicas accepted.

An event is queued at most once, from whichever way it arrives (this replica's own webhook, the store's signal
that another replica committed a notification, the periodic look at everything undecided, the load after a
start), and stays known until its decision is recorded, so none of those ways can queue it a second time while it
is being decided. Timer ticks (``poke``) go through the same queue, so a tick is never lost behind a busy batch.

Events that can start a rollback at once (``urgent``: a firing alert whose policy is ``immediate``) are decided
before everything queued ahead of them: in a storm the queue can hold seconds of other teams' alerts, duplicates
and notices, and the alert that matters must not wait for them. Only an event whose fingerprint has nothing queued
ahead of it in the ordinary queue goes first, so what one alert says (firing, resolved, firing again) is still
decided in the order it arrived; between different alerts no order was promised (concurrent deliveries race).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence

from responder.core.model import AlertEvent
from responder.store import Store

Queued = tuple[AlertEvent, float] | None  # an event and when it was received; None: a timer tick
_BATCH = 256
_LOCAL_MAX = 10_000  # notification ids this replica stored and queued, whose store signal needs no read


class Inbox:
    def __init__(
        self, store: Store, *, poll_s: float, urgent: Callable[[AlertEvent], bool] = lambda event: False
    ) -> None:
        self.store, self.poll_s, self.urgent = store, poll_s, urgent
        self._ready = asyncio.Event()
        self.reset()
        self._wake = asyncio.Event()
        self._signalled: set[int] = set()

    def reset(self) -> None:
        self._first: collections.deque[tuple[AlertEvent, float]] = collections.deque()  # urgent events
        self._queue: collections.deque[Queued] = collections.deque()  # everything else, in arrival order
        self._queued: collections.Counter[str] = collections.Counter()  # fingerprints in _queue
        self._ready.clear()
        self.known: set[int] = set()  # ids queued or being decided, until their decisions are recorded
        self.open = 0  # queued items (events and ticks) whose decisions are not recorded yet
        self._local: set[int] = set()  # see accepted()

    @property
    def backlog(self) -> int:
        return len(self._first) + len(self._queue)

    def add(self, event: AlertEvent, received_at: float) -> None:
        if event.event_id in self.known:
            return
        self.known.add(event.event_id)
        self.open += 1
        if not self._queued[event.fingerprint] and self.urgent(event):
            self._first.append((event, received_at))
        else:
            self._queued[event.fingerprint] += 1
            self._queue.append((event, received_at))
        self._ready.set()

    def accepted(self, events: Sequence[AlertEvent], received_at: float) -> None:
        """Queue the events of a notification this replica stored. On the shared store its signal comes back to
        this replica too; it is then not read back (one read transaction per notification, for nothing)."""
        for event in events:
            self.add(event, received_at)
        if events and self.store.shared:
            if len(self._local) >= _LOCAL_MAX:  # signals that never came (a dropped listener): forget them
                self._local.clear()
            self._local.add(events[0].notification_id)

    def poke(self) -> None:
        self.open += 1
        self._queue.append(None)
        self._ready.set()

    async def take(self, wait_s: float | None) -> list[tuple[AlertEvent, float]]:
        """The next batch (up to 256 items, urgent events first, waiting up to ``wait_s`` for the first); [] for a
        timeout or ticks."""
        if not self.backlog:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), wait_s)
            except TimeoutError:
                return []
        batch = [self._first.popleft() for _ in range(min(_BATCH, len(self._first)))]
        ticks = 0
        while self._queue and len(batch) + ticks < _BATCH:
            item = self._queue.popleft()
            if item is None:
                ticks += 1
                continue
            batch.append(item)
            fingerprint = item[0].fingerprint
            self._queued[fingerprint] -= 1
            if not self._queued[fingerprint]:
                del self._queued[fingerprint]
        self.open -= ticks
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
            theirs = sorted(wanted - {0} - self._local)
            self._local -= wanted
            for notification_id in theirs:
                for event, received_at in await self.store.undecided_events(notification_id=notification_id):
                    self.add(event, received_at)
            if 0 in wanted and any(i not in self.known for i in await self.store.undecided_ids()):
                for event, received_at in await self.store.undecided_events():
                    self.add(event, received_at)
