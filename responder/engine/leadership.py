"""Whether this replica may act right now, and under which leadership term its records are written.

One replica alone (SQLite) always may: it has no term and its writes are not fenced. With several replicas on the
shared store, the replica holding the Kubernetes Lease gets a term from the database when it takes over; until it
steps down, the engine writes every record with that term (the database refuses a write whose term is not the
current one: a deposed leader cannot record, so it cannot make a write-ahead intent, so it cannot mutate), and
checks before every mutation that its leadership is still *certain*: renewed recently enough, on its own monotonic
clock, that the Lease cannot have passed to another replica meanwhile (see :mod:`responder.adapters.leader`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("responder.leader")

DEPOSED = -1  # the term of a replica that is not leading: no database term ever matches it


class NotLeading(Exception):
    """This replica may not act now: its leadership is not certain, or the database fenced its term. The work in
    hand stops without a result; the next leader takes it up from the records."""


class Authority:
    """What the engine asks before it records or acts. ``certain`` says whether the leadership is certain now
    (None: a single replica, always certain and never fenced)."""

    def __init__(self, certain: Callable[[], bool] | None = None) -> None:
        self._certain = certain
        self.term: int | None = None if certain is None else DEPOSED
        self.on_lost: Callable[[str], None] | None = None  # told when acting was refused (the elector steps down)

    @property
    def replicated(self) -> bool:
        return self._certain is not None

    def may_act(self) -> bool:
        if self._certain is None:
            return True
        return self.term not in (None, DEPOSED) and self._certain()

    def check(self, what: str) -> None:
        """Raise NotLeading unless this replica may act now (called right before every mutation)."""
        if not self.may_act():
            self.lost(f"{what} refused: leadership is not certain")
            raise NotLeading(f"{what}: this replica is not certain to lead; the next leader takes it up")

    def lost(self, why: str) -> None:
        """Something found this replica deposed (a fenced write, an expired certainty): step down now."""
        if self.on_lost is not None:
            self.on_lost(why)
