"""Requests refused for want of valid credentials (401), summed up instead of audited one by one.

Anyone who reaches the port can send such requests; one audit row each (about 1.3 KB, plus a stdout line) would
let them grow the database without bound. So they are still counted per request (the rejected-requests metric,
done by the caller) but audited as one ``rejected.summary`` entry per interval: counts by reason and by route
template, the first and last time, and a few sample remote addresses, all bounded whatever the traffic. The log
line is rate-limited the same way: the caller logs the first rejection of each reason in an interval, and the
summary is logged when it is written. Rejections of known credentials (403, 413, 422, ...) are not summed here:
they come from someone holding a secret, and each is audited on its own.

The flusher is a background task; a failing write is logged at ERROR with the summary it could not store (so the
counts survive in the log) and the task goes on. On shutdown the summary so far is written before the task ends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from responder.health import Health

log = logging.getLogger("responder.http")

KIND = "rejected.summary"
SAMPLE_REMOTES = 5
MAX_KEYS = 64  # distinct reasons or routes kept per interval; beyond, counted under OTHER
OTHER = "(other)"

Write = Callable[[dict[str, Any]], Awaitable[None]]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _bump(counts: collections.Counter[str], key: str) -> None:
    counts[key if key in counts or len(counts) < MAX_KEYS else OTHER] += 1


@dataclass(slots=True)
class _Interval:
    first: float
    last: float
    count: int = 0
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    paths: collections.Counter[str] = field(default_factory=collections.Counter)
    remotes: list[str] = field(default_factory=list)


class RejectionSummary:
    """Sums rejections of one interval; :meth:`run` writes each interval's summary (``interval_s``: 60 in
    production, a fraction of a second in tests)."""

    def __init__(self, *, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._current: _Interval | None = None
        self._stopping = asyncio.Event()
        self.health: Health | None = None  # set by the application: a failing round is reported there

    def add(self, *, reason: str, route: str, remote: str, at: float) -> bool:
        """Count one rejection; True when it is the first of its reason in this interval (log that one)."""
        current = self._current
        if current is None:
            current = self._current = _Interval(first=at, last=at)
        first_of_reason = reason not in current.reasons
        current.count += 1
        current.last = max(current.last, at)
        _bump(current.reasons, reason)
        _bump(current.paths, route)
        if remote not in current.remotes and len(current.remotes) < SAMPLE_REMOTES:
            current.remotes.append(remote)
        return first_of_reason

    def take(self) -> dict[str, Any] | None:
        """The summary of the interval so far (None when nothing was rejected), and a new interval begins."""
        current, self._current = self._current, None
        if current is None:
            return None
        return {
            "status": 401,
            "count": current.count,
            "reasons": dict(current.reasons),
            "paths": dict(current.paths),
            "first": _iso(current.first),
            "last": _iso(current.last),
            "remotes": current.remotes,
            "interval_s": self.interval_s,
        }

    async def flush(self, write: Write) -> None:
        summary = self.take()
        if summary is None:
            return
        text = orjson.dumps(summary).decode()
        log.warning("rejected %d requests without valid credentials: %s", summary["count"], text)
        try:
            await write(summary)
        except Exception:
            log.exception("could not audit the summary of %d rejected requests: %s", summary["count"], text)

    async def run(self, write: Write) -> None:
        """Write a summary every interval until :meth:`stop`, then the last one; never ends on an error."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
            try:
                await self.flush(write)
            except Exception as exc:  # a bug here must not end the task silently: the next interval tries again
                if self.health is not None:
                    self.health.crashed("rejection-summaries", exc)
                else:
                    log.exception("the summary of rejected requests failed")

    def stop(self) -> None:
        self._stopping.set()
