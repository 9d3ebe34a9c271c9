"""The Alertmanager webhook payload (version 4) as pydantic models, and its conversion into alert events.

Accepts what real Alertmanagers send, old and new: unknown fields (``notification_reason``, ``routeLabels``),
RFC 3339 timestamps with up to nine fractional digits (kept to the microsecond), ``endsAt`` of
``0001-01-01T00:00:00Z`` while firing (mapped to None), regexp-quoted receiver names (kept verbatim: the
receiver never takes part in a decision) and ``truncatedAlerts`` > 0.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from responder.core.model import AlertEvent, AlertStatus

_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    """Normalise to UTC; the zero time written with a positive offset falls before year 1 and is refused."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range") from None


Timestamp = Annotated[AwareDatetime, AfterValidator(_as_utc)]
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LabelValue = Annotated[str, StringConstraints(max_length=8192)]
Labels = Annotated[dict[LabelName, LabelValue], Field(max_length=256)]


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    startsAt: Timestamp
    endsAt: Timestamp | None = None
    generatorURL: Annotated[str, StringConstraints(max_length=8192)] = ""
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class WebhookNotification(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    version: Literal["4"]
    groupKey: Annotated[str, StringConstraints(max_length=8192)]
    truncatedAlerts: Annotated[int, Field(ge=0)] = 0
    status: Literal["firing", "resolved"]
    receiver: Annotated[str, StringConstraints(max_length=1024)]
    groupLabels: Labels = Field(default_factory=dict)
    commonLabels: Labels = Field(default_factory=dict)
    commonAnnotations: Labels = Field(default_factory=dict)
    externalURL: Annotated[str, StringConstraints(max_length=8192)] = ""
    alerts: Annotated[list[WebhookAlert], Field(min_length=1, max_length=10_000)]


def to_event(alert: WebhookAlert, *, notification_id: int = 0, event_id: int = 0) -> AlertEvent:
    ends_at = None if alert.endsAt == _ZERO_TIME else alert.endsAt
    return AlertEvent(
        fingerprint=alert.fingerprint,
        status=AlertStatus(alert.status),
        starts_at=alert.startsAt,
        ends_at=ends_at,
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        generator_url=alert.generatorURL,
        event_id=event_id,
        notification_id=notification_id,
    )
