"""One rolled-back canary's incident for the message, card, report and page tests: the same identity everywhere,
each test file bringing its own reason, steps, alerts and numbers (and overriding anything else it tests)."""

from __future__ import annotations

from typing import Any

from responder.notify.incident import Incident

INCIDENT_ID = "shop:checkout-canary:20261127T204426.695970Z"


def rolled_back(**values: Any) -> Incident:
    identity: dict[str, Any] = {
        "id": INCIDENT_ID,
        "kind": "rollback",
        "status": "done",
        "created_at": "2026-11-27T20:44:26.695970Z",
        "target": "shop/checkout-canary",
        "namespace": "shop",
        "deployment": "checkout-canary",
    }
    return Incident(**{**identity, **values})
