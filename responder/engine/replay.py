"""Feeding the decision core: one event at a time (an event the core cannot decide is quarantined, never retried),
and the recorded inputs again after a restart, exactly as they were fed the first time (the core is
deterministic, so replaying them rebuilds the state it had)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from responder.core.decide import Decision, DecisionCore
from responder.core.model import AlertEvent, Outcome, TargetRef
from responder.store import CoreInput

log = logging.getLogger("responder.engine")


def decide_one(core: DecisionCore, event: AlertEvent, now: datetime, *, replaying: bool = False) -> list[Decision]:
    """The core's decisions for one event; an event it cannot decide is quarantined (ERROR). Replaying gives the
    same answer, since the core is deterministic."""
    try:
        return core.on_event(event, now)
    except Exception as exc:
        if not replaying:
            log.error("could not decide event %d (%s); quarantined", event.event_id, event.alertname, exc_info=exc)
        reason = f"could not be processed: {type(exc).__name__}: {exc}"[:500]
        return [Decision(outcome=Outcome.ERROR, event=event, reason=reason)]


def apply(core: DecisionCore, item: CoreInput, events: Mapping[int, AlertEvent]) -> list[Decision]:
    """Feed one recorded input to the core again; ``events``: the stored events its batch named."""
    if item.kind == "batch":
        decisions = core.on_tick(item.at)
        for event_id in event_ids(item):
            event = events.get(event_id)
            if event is not None:
                decisions.extend(decide_one(core, event, item.at, replaying=True))
        return decisions
    if item.kind == "pause":
        core.set_paused(item.data.get("why"))
    elif item.kind == "live":
        core.mark_live(TargetRef.from_dict(item.data["target"]))
    elif item.kind == "result":
        core.on_result(
            incident=str(item.data["incident"]),
            target=TargetRef.from_dict(item.data["target"]),
            status=str(item.data["status"]),
            changed=bool(item.data["changed"]),
            now=item.at,
        )
    return []


def event_ids(item: CoreInput) -> list[int]:
    return [int(i) for i in item.data.get("events", [])]
