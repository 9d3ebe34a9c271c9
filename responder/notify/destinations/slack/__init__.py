"""Slack: messages laid out in Block Kit (:mod:`responder.notify.destinations.slack.blocks`), sent through slack-sdk
(:mod:`responder.notify.destinations.slack.client`) with an incoming webhook or a bot token (thread replies)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from responder.notify.base import Delivered, Message, SenderNotifier
from responder.notify.destinations.slack import blocks
from responder.notify.destinations.slack.client import SlackSender
from responder.notify.incident import Incident, Links


class SlackNotifier(SenderNotifier[SlackSender]):
    destination = "slack"

    @property
    def threads(self) -> bool:
        return self.sender.threads

    def incident(self, incident: Incident, links: Links) -> Message:
        return _message(blocks.incident_message(incident, links))

    def followup(
        self, incident_id: str, kind: str, data: Mapping[str, Any], links: Links, *, threaded: bool
    ) -> Message:
        return _message(blocks.followup_message(incident_id, kind, data, links, threaded=threaded))

    def fallback(self, incident_id: str, kind: str, target: str | None, error: str, links: Links) -> Message:
        return _message(blocks.fallback_message(incident_id, kind, target, error, links))

    async def deliver(self, message: Message, *, thread: str | None) -> Delivered:
        posted = await self.sender.post(text=message.text, blocks=message.payload["blocks"], thread_ts=thread)
        return Delivered(thread=posted.ts, channel=posted.channel)


def _message(laid_out: blocks.SlackMessage) -> Message:
    return Message(text=laid_out.text, payload={"blocks": laid_out.blocks})


__all__ = ["SlackNotifier", "SlackSender"]
