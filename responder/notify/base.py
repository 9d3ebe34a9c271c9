"""What a notifier is: the plug-in seam for every place incident messages go (Slack, Microsoft Teams ...).

A notifier lays the incident content (:mod:`responder.notify.incident`) out in its own format (``incident``,
``followup``, ``fallback``: pure), and delivers a laid-out message (``deliver``), saying whether and when to try
again when it cannot (:class:`DeliveryFailed`). The durable outbox (:mod:`responder.notify.outbox`) does the rest
for every notifier alike: one row per notice and destination, written in the transaction that records the fact;
delivery in order per incident and destination, retries with the shared backoff (:mod:`responder.retry`), thread
references per incident and destination, and an audit entry per attempt. Adding a destination is a module here, its
settings, and one line in :func:`responder.notify.build_notifiers`. See docs/adding-a-notifier.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from responder.notify.incident import Incident, Links


@dataclass(frozen=True, slots=True)
class Message:
    """A laid-out message: ``text`` for previews and logs, ``payload`` in the destination's own format."""

    text: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where a message landed: ``thread`` is what a reply needs (None: the destination cannot thread)."""

    thread: str | None = None
    channel: str | None = None


class DeliveryFailed(Exception):
    """A delivery that did not happen. ``reason`` is a short closed code (a metric label and audit field);
    ``retryable`` says whether the same message may get through later, not before ``retry_after`` seconds."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason, self.message, self.retryable = reason, message, retryable
        self.status, self.retry_after = status, retry_after


class Notifier(Protocol):
    destination: str  # the outbox rows' destination, e.g. "slack", "teams" (one notifier per destination)

    @property
    def threads(self) -> bool:
        """Whether follow-ups can be replies in the incident's thread (else each names the incident)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def incident(self, incident: Incident, links: Links) -> Message: ...

    def followup(
        self, incident_id: str, kind: str, data: Mapping[str, Any], links: Links, *, threaded: bool
    ) -> Message: ...

    def fallback(self, incident_id: str, kind: str, target: str | None, error: str, links: Links) -> Message:
        """The short form sent when the full message cannot be built (never drop a message)."""
        ...

    async def deliver(self, message: Message, *, thread: str | None) -> Delivered:
        """Send one message (a reply in ``thread`` when given and supported); raise DeliveryFailed."""
        ...


class Sender(Protocol):
    """What a destination's client owns: its HTTP session, opened and closed with the notifier."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


S = TypeVar("S", bound=Sender)


class SenderNotifier(Generic[S]):
    """A convenient base for a notifier that delivers through one client: ``open``/``close`` pass to it. The client
    raises :class:`DeliveryFailed` (or a subclass with its own closed reasons) for every failure."""

    def __init__(self, sender: S) -> None:
        self.sender = sender

    async def open(self) -> None:
        await self.sender.open()

    async def close(self) -> None:
        await self.sender.close()
