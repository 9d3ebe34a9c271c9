"""Exact repeats: a notification whose bytes were stored already, accepted durably without being decided again.

Alertmanager sends the same notification again, byte for byte: every ``repeat_interval`` while its alerts fire,
and again after a 5xx or a timeout. In a storm most deliveries are such repeats. The whole path would parse and
validate the body, store it and its alerts once more, and have the core decide each alert DUPLICATE (rule 1: an
identity already seen). When the body's SHA-256 is that of a notification this leader stored, and the core saw
each of its alerts within ``window``, that outcome is known before the body is even parsed. So the repeat is
recorded in a cheaper form, and the answer is still 200 only once that record is committed.

What a repeat proves stays provable. One ``receipt.repeats`` audit entry per commit (at most
:data:`PER_ENTRY` repeats each) lists, for each stored notification repeated, its id, its SHA-256 and the number of
alerts, and for each repeat when it arrived and from where, with the decision: every alert DUPLICATE. The body is
not stored again; the hash ties the repeat to the stored body, and ``audit verify`` checks that it still does.

Why ``window``: the core refreshes an alert's dedupe entry each time it decides a repeat, but a repeat answered here
does not reach the core. That keeps restarts exact: nothing here is a core input, so a restart replays the same
decisions. After ``window`` the next repeat of the body takes the whole path again and refreshes the alerts, so a
dedupe entry is never more than ``window`` older than it would otherwise be (60 s by default, against a 6 h TTL).
Nothing here holds up an undecided alert: until the core has seen every alert of the body, repeats take the whole
path (and are decided DUPLICATE there, as before).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from responder.core.model import AlertEvent, Outcome
from responder.core.state import shifted
from responder.store import Fenced, Tx, WriteRejected

if TYPE_CHECKING:
    from responder.engine.engine import Engine

log = logging.getLogger("responder.engine")

PER_ENTRY = 100  # repeats listed in one receipt.repeats entry (a commit with more writes several)
MAX_ALERTS = 4_096  # alert identities held for the bodies remembered (about 1 MB); least recently used go first


@dataclass(frozen=True, slots=True)
class Known:
    """A stored notification's body: what a byte-for-byte repeat of it is about."""

    notification_id: int
    sha256: str
    identities: tuple[object, ...]
    truncated: int  # alerts Alertmanager left out of it (truncatedAlerts)


@dataclass(frozen=True, slots=True)
class Repeat:
    known: Known
    received_at: float
    remote: str
    user_agent: str


class _Group:
    """The repeats that commit together. The store's thread closes it when the write runs, and it is closed once
    its write is done whatever happened; a repeat that comes later starts the next group. Closing twice gives the
    same repeats (the writer may run a batch again)."""

    __slots__ = ("future", "items", "lock", "open")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[Repeat] = []
        self.open = True
        self.future: asyncio.Future[Any] | None = None

    def add(self, repeat: Repeat) -> bool:
        with self.lock:
            if self.open:
                self.items.append(repeat)
            return self.open

    def close(self) -> list[Repeat]:
        with self.lock:
            self.open = False
            return self.items


class Repeats:
    def __init__(self, engine: Engine, window: timedelta) -> None:
        self.engine = engine
        self.window = min(window, engine.core.settings.dedupe_ttl / 2)
        self._known: OrderedDict[bytes, Known] = OrderedDict()
        self._alerts = 0
        self._group: _Group | None = None
        self._counted = engine.metrics.repeats
        self._duplicates = engine.metrics.events.labels(Outcome.DUPLICATE.value)

    def remember(self, digest: bytes, stored: Sequence[AlertEvent], truncated: int) -> None:
        """A notification was stored (and its alerts queued) by this leader under the body's SHA-256 ``digest``."""
        if self.window <= timedelta(0) or not stored or len(stored) > MAX_ALERTS:
            return  # no alerts: no notification id to cite (and nothing to decide on the whole path either)
        known = Known(stored[0].notification_id, digest.hex(), tuple(e.identity for e in stored), truncated)
        old = self._known.pop(digest, None)
        self._alerts += len(known.identities) - (len(old.identities) if old else 0)
        self._known[digest] = known
        while self._alerts > MAX_ALERTS:
            _, dropped = self._known.popitem(last=False)
            self._alerts -= len(dropped.identities)

    async def take(self, digest: bytes, *, received_at: float, remote: str, user_agent: str) -> Known | None:
        """Record a byte-for-byte repeat and return what it repeats, once committed; None when it must take the
        whole path (not a known body, an alert not seen within the window, not leading, the record refused).
        StoreUnavailable passes through (the webhook answers 503, as for any notification)."""
        engine = self.engine
        known = self._known.get(digest)
        if known is None or not (engine.running and engine.authority.may_act()):
            return None
        if not engine.core.repeats(known.identities, shifted(engine.clock(), -self.window)):
            return None
        group = self._group
        repeat = Repeat(known, received_at, remote, user_agent)
        if group is None or not group.add(repeat):
            group = self._group = _Group()
            group.add(repeat)
            group.future = engine.store.submit(_writer(group), term=engine.authority.term)
            group.future.add_done_callback(lambda _: group.close())  # failed before it ran (at BEGIN): done too
        assert group.future is not None
        try:
            await asyncio.shield(group.future)
        except Fenced as exc:
            engine.authority.lost(f"the database fenced a record: {exc}")
            return None  # the whole path stores it; the next leader decides it
        except WriteRejected as exc:  # plain strings and numbers: this should not happen, so say so loudly
            engine.metrics.poison_writes.inc()
            log.error("a repeat could not be recorded (%s); it takes the whole path", exc)
            return None
        self._counted.inc()
        self._duplicates.inc(len(known.identities))
        return known


def _writer(group: _Group) -> Callable[[Tx], None]:
    def write(tx: Tx) -> None:
        items = group.close()
        for start in range(0, len(items), PER_ENTRY):
            tx.append_audit("receipt.repeats", repeats_entry(items[start : start + PER_ENTRY]), actor="alertmanager")

    return write


def repeats_entry(items: Sequence[Repeat]) -> dict[str, Any]:
    """The audit data of one ``receipt.repeats`` entry: the repeats grouped by the notification they repeat."""
    by_notification: dict[int, dict[str, Any]] = {}
    for item in items:
        known = item.known
        entry = by_notification.setdefault(
            known.notification_id,
            {
                "notification_id": known.notification_id,
                "sha256": known.sha256,
                "alerts": len(known.identities),
                "received": [],
            },
        )
        entry["received"].append({"at": item.received_at, "remote": item.remote, "user_agent": item.user_agent})
    return {
        "repeats": len(items),
        "decision": Outcome.DUPLICATE.value,
        "reason": "byte-for-byte repeat of a stored notification whose alerts were all seen",
        "notifications": list(by_notification.values()),
    }
