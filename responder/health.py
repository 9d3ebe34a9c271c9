"""Supervision of the responder's long-lived tasks: an unexpected end is never silent.

Every background loop (the decide loop, the store's writer, the delivery workers, the leader election, the lanes'
work) runs under :func:`supervise` or reports to :class:`Health` itself. An unexpected exception is logged at ERROR
with its traceback and counted by task (``canary_responder_task_crashes_total``); the task is restarted with
backoff. A task that keeps crashing (``max_crashes`` within ``window_s``), or one that reports it cannot go on,
turns ``/healthz`` red, so Kubernetes restarts the pod instead of leaving a dead task behind a 200.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from responder.retry import Backoff

log = logging.getLogger("responder.health")
RESTARTS = Backoff(attempts=1_000_000_000, base_delay_s=0.1, max_delay_s=30.0, jitter=0.0)


class CrashCounter(Protocol):
    def crashed(self, task: str) -> None: ...


class Health:
    """Crash bookkeeping for /healthz; thread-safe enough for the store thread's single reports (appends)."""

    def __init__(
        self,
        counter: CrashCounter | None = None,
        *,
        max_crashes: int = 5,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counter = counter
        self._max = max_crashes
        self._window = window_s
        self._clock = clock
        self._crashes: dict[str, deque[float]] = {}
        self._fatal: dict[str, str] = {}

    def crashed(self, task: str, exc: BaseException) -> None:
        """An unexpected exception ended (one round of) ``task``: log it loudly and count it."""
        log.error("task %s crashed: %s: %s", task, type(exc).__name__, exc, exc_info=exc)
        if self._counter is not None:
            self._counter.crashed(task)
        times = self._crashes.setdefault(task, deque())
        times.append(self._clock())

    def fatal(self, task: str, why: str) -> None:
        """``task`` cannot go on: /healthz stays red until the process restarts."""
        log.critical("task %s cannot go on: %s", task, why)
        self._fatal[task] = why

    def problems(self) -> list[str]:
        now = self._clock()
        found = [f"{task}: {why}" for task, why in sorted(self._fatal.items())]
        for task, times in sorted(self._crashes.items()):
            while times and times[0] < now - self._window:
                times.popleft()
            if len(times) >= self._max:
                found.append(f"{task}: crashed {len(times)} times in the last {self._window:.0f}s")
        return found


async def supervise(
    name: str,
    body: Callable[[], Awaitable[None]],
    *,
    health: Health,
    recover: Callable[[], Awaitable[None]] | None = None,
    backoff: Backoff = RESTARTS,
) -> None:
    """Run ``body`` for ever: it is a long-lived loop, so returning is as unexpected as raising. After either,
    report the crash, wait (``backoff``; it starts again after a minute without a crash), run ``recover`` and
    start again. Cancellation ends it."""
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            await body()
            raise RuntimeError(f"{name} returned; it should run until cancelled")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health.crashed(name, exc)
        attempt = 1 if time.monotonic() - started > 60 else attempt + 1  # it ran fine for a while: start over
        await asyncio.sleep(backoff.delay(attempt))
        if recover is not None:
            try:
                await recover()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                health.crashed(f"{name}.recover", exc)
