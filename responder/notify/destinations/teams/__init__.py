"""Microsoft Teams: incident cards laid out as Adaptive Cards (:mod:`responder.notify.destinations.teams.cards`) and
posted to a Workflows or incoming-webhook URL (:mod:`responder.notify.destinations.teams.client`). A Teams webhook
cannot reply in a thread, so each follow-up is a card of its own that names the incident."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from responder.notify.base import Delivered, Message, SenderNotifier
from responder.notify.destinations.teams import cards
from responder.notify.destinations.teams.client import TeamsSender
from responder.notify.incident import Incident, Links


class TeamsNotifier(SenderNotifier[TeamsSender]):
    destination = "teams"
    threads = False  # a Teams webhook cannot reply in a thread

    def incident(self, incident: Incident, links: Links) -> Message:
        return _message(cards.incident_card(incident, links))

    def followup(
        self, incident_id: str, kind: str, data: Mapping[str, Any], links: Links, *, threaded: bool
    ) -> Message:
        return _message(cards.followup_card(incident_id, kind, data, links, threaded=threaded))

    def fallback(self, incident_id: str, kind: str, target: str | None, error: str, links: Links) -> Message:
        return _message(cards.fallback_card(incident_id, kind, target, error, links))

    async def deliver(self, message: Message, *, thread: str | None) -> Delivered:
        await self.sender.post(message.payload)
        return Delivered()


def _message(laid_out: cards.TeamsMessage) -> Message:
    return Message(text=laid_out.text, payload=laid_out.payload)


__all__ = ["TeamsNotifier", "TeamsSender"]
