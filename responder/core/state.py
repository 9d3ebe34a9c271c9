"""The decision core's memory, as plain values: what was rolled back, what waits for a deadline, what failed and
is retried, and maps whose entries expire. Pure; date arithmetic saturates at the ends of the calendar."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from responder.core.model import AlertEvent, TargetRef
from responder.core.rules import PolicyRule

LATEST = datetime.max.replace(tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)


def shifted(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, saturating at the ends of the calendar (year 1 and 9999) instead of raising."""
    try:
        return moment + delta
    except OverflowError:
        return LATEST if delta > timedelta(0) else EARLIEST


@dataclass(slots=True)
class Rollback:
    incident: str
    at: datetime
    policy: PolicyRule
    events: dict[str, AlertEvent]  # fingerprint -> the latest firing event cited by the rollback


@dataclass(slots=True)
class Pending:
    event: AlertEvent
    target: TargetRef
    policy: PolicyRule
    deadline: datetime


@dataclass(slots=True)
class Failing:
    """A rollback that failed: the canary is still live. Retried while any of ``events`` still fires."""

    incident: str
    target: TargetRef
    policy: PolicyRule
    events: dict[str, AlertEvent]  # fingerprint -> latest firing event; a resolution removes it
    attempts: int  # retries started so far
    next_at: datetime
    in_flight: bool = False  # a retry is running: its result comes back through on_result

    @property
    def latest(self) -> AlertEvent:
        return max(self.events.values(), key=lambda e: (e.starts_at, e.event_id))


@dataclass(slots=True)
class Expiring:
    """An insertion-ordered map whose entries expire ``ttl`` after their last refresh, bounded in size."""

    ttl: timedelta
    limit: int
    items: OrderedDict[object, tuple[datetime, object]] = field(default_factory=OrderedDict)

    def get(self, key: object) -> object | None:
        entry = self.items.get(key)
        return None if entry is None else entry[1]

    def fresh(self, key: object, since: datetime) -> bool:
        """Whether ``key`` is held and was last refreshed at ``since`` or later."""
        entry = self.items.get(key)
        return entry is not None and entry[0] >= shifted(since, self.ttl)

    def put(self, key: object, value: object, now: datetime) -> None:
        self.items[key] = (shifted(now, self.ttl), value)
        self.items.move_to_end(key)
        while len(self.items) > self.limit:
            self.items.popitem(last=False)

    def expire(self, now: datetime) -> None:
        while self.items:
            key, (expiry, _) = next(iter(self.items.items()))
            if expiry > now:
                return
            del self.items[key]
