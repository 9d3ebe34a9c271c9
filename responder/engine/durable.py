"""Records the engine must not drop: its decisions already changed the core's state, and every step it took must
be on record. A write is retried while the database is unavailable (meanwhile webhooks get 503 and /readyz fails,
so nothing new piles up); a write the database refuses for its own data is replaced once by a fallback (a loud
quarantine record), or raised. Every record carries the leadership term (:mod:`responder.engine.leadership`): one
the database fences, or a retry once leadership is no longer certain, raises NotLeading (the next leader takes the
work up from what is recorded)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from responder.engine.leadership import Authority, NotLeading
from responder.metrics import Metrics
from responder.retry import Backoff
from responder.store import Fenced, Store, StoreUnavailable, Tx, WriteRejected

log = logging.getLogger("responder.engine")

T = TypeVar("T")
Write = Callable[[Tx], Any]
_RETRY = Backoff(attempts=1_000_000_000, base_delay_s=0.05, max_delay_s=5.0, jitter=0.0)


class Durable:
    def __init__(self, store: Store, metrics: Metrics, authority: Authority | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.authority = authority or Authority()
        self.tasks: set[asyncio.Task[None]] = set()  # background retries of queued records (cancelled on stop)

    async def write(
        self, fn: Callable[[Tx], T], *, urgent: bool = False, fallback: Callable[[str], Write] | None = None
    ) -> T | None:
        """Run ``fn`` in a transaction, retrying until the database takes it. ``fallback(error)`` replaces a
        write the database refuses for its data (its result is then None); without one, the refusal is raised."""
        attempt, current = 0, fn
        while True:
            attempt += 1
            try:
                result: T = await self.store.write(current, urgent=urgent, term=self.authority.term)
                return result
            except Fenced as exc:
                self.authority.lost(f"the database fenced a record: {exc}")
                raise NotLeading(str(exc)) from exc
            except StoreUnavailable as exc:
                delay = _RETRY.delay(attempt)
                log.error("cannot write to the database (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                if not self.authority.may_act():  # deposed while the database was away: the next leader records
                    raise NotLeading(f"not leading any more; record not retried ({exc})") from exc
            except WriteRejected as exc:
                self.metrics.poison_writes.inc()
                log.error("the database refused a record for its data (%s)", exc)
                if fallback is None:
                    raise
                current, fallback = fallback(str(exc)), None

    def queue(self, fn: Write) -> None:
        """Queue a record now (keeping its place in the store's order) without waiting for it; if that commit
        fails, keep retrying it in the background rather than leave a gap in the audit trail."""

        def done(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is not None:
                task = asyncio.create_task(self._retry(fn))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

        self.store.submit(fn, term=self.authority.term).add_done_callback(done)

    async def _retry(self, fn: Write) -> None:
        try:
            await self.write(fn)
        except NotLeading as exc:
            log.warning("a queued record was not written: %s", exc)

    async def cancel(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()
