"""The Alertmanager webhook payload (version 4) as pydantic models, and its conversion into alert events.

Accepts what real Alertmanagers send, old and new: unknown fields (``notification_reason``, ``routeLabels``),
RFC 3339 timestamps with up to nine fractional digits (kept to the microsecond), ``endsAt`` of
``0001-01-01T00:00:00Z`` while firing (mapped to None), regexp-quoted receiver names (kept verbatim: the
receiver never takes part in a decision) and ``truncatedAlerts`` > 0.

Every timestamp and integer from outside is range-checked here, at the edge, so that nothing later (date
arithmetic, SQLite, Go tooling reading what we export) meets a value it cannot hold: ``startsAt`` and ``endsAt``
lie in [:data:`EARLIEST_TIMESTAMP`, :data:`LATEST_TIMESTAMP`] (``endsAt`` may also be the zero time), and
``truncatedAlerts`` in [0, :data:`MAX_TRUNCATED_ALERTS`]. Anything outside is a 422 naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from responder.core.model import AlertEvent, AlertStatus

_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)

EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
"""The Unix epoch: no real alert starts or ends before it (Prometheus and Alertmanager count time from it)."""
LATEST_TIMESTAMP = datetime(2262, 4, 11, 23, 47, 16, tzinfo=UTC)
"""The last whole second an int64 of nanoseconds since the epoch holds: the widest time Go and Prometheus tooling
(``time.Time.UnixNano``, ``model.Time``) can represent; beyond it deadlines (``startsAt`` + ``persist_for``) and
what we export would overflow or wrap."""
MAX_TRUNCATED_ALERTS = 2**63 - 1
"""SQLite's INTEGER is a signed 64-bit value: a larger count could not be stored (and once stopped the inbox)."""
_RANGE = f"{EARLIEST_TIMESTAMP:%Y-%m-%dT%H:%M:%SZ} and {LATEST_TIMESTAMP:%Y-%m-%dT%H:%M:%SZ}"


def _as_utc(value: datetime) -> datetime:
    """Normalise to UTC; the zero time written with a positive offset falls before year 1 and is refused."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range") from None


def _in_range(value: datetime) -> datetime:
    if not EARLIEST_TIMESTAMP <= value <= LATEST_TIMESTAMP:
        raise ValueError(f"timestamp must lie between {_RANGE}")
    return value


def _in_range_or_zero(value: datetime) -> datetime:
    """``endsAt`` is also the zero time (Alertmanager's "still firing"), compared as an instant."""
    if value == _ZERO_TIME:
        return value
    if not EARLIEST_TIMESTAMP <= value <= LATEST_TIMESTAMP:
        raise ValueError(f"timestamp must lie between {_RANGE}, or be the zero time 0001-01-01T00:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_as_utc)]
StartsAt = Annotated[Timestamp, AfterValidator(_in_range)]
EndsAt = Annotated[Timestamp, AfterValidator(_in_range_or_zero)]
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LabelValue = Annotated[str, StringConstraints(max_length=8192)]
Labels = Annotated[dict[LabelName, LabelValue], Field(max_length=256)]


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    startsAt: StartsAt = Field(description=f"RFC 3339 with an offset, between {_RANGE}")
    endsAt: EndsAt | None = Field(
        default=None, description=f"RFC 3339 with an offset, between {_RANGE}; or 0001-01-01T00:00:00Z (firing)"
    )
    generatorURL: Annotated[str, StringConstraints(max_length=8192)] = ""
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class WebhookNotification(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    version: Literal["4"]
    groupKey: Annotated[str, StringConstraints(max_length=8192)]
    truncatedAlerts: Annotated[int, Field(ge=0, le=MAX_TRUNCATED_ALERTS)] = 0
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
