"""The Alertmanager webhook payload model: what real Alertmanagers send is accepted, nonsense is rejected by field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from responder.core import webhook
from responder.core.model import AlertStatus
from responder.core.webhook import WebhookNotification, to_event


def payload(**overrides: Any) -> dict[str, Any]:
    """A notification as Alertmanager 0.25 sends it (one firing alert)."""
    body: dict[str, Any] = {
        "receiver": "canary-responder",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "CanaryErrorRate", "namespace": "shop", "app": "cart", "action": "rollback"},
                "annotations": {"summary": "canary error rate above 5%"},
                "startsAt": "2025-03-01T12:00:00.123Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
                "fingerprint": "c6a1b2d3e4f50617",
            }
        ],
        "groupLabels": {"alertname": "CanaryErrorRate"},
        "commonLabels": {"alertname": "CanaryErrorRate"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="CanaryErrorRate"}',
        "truncatedAlerts": 0,
    }
    body.update(overrides)
    return body


def with_alert(**overrides: Any) -> dict[str, Any]:
    body = payload()
    body["alerts"] = [copy.deepcopy(body["alerts"][0]) | overrides]
    return body


def error_locs(body: dict[str, Any]) -> list[tuple[str | int, ...]]:
    with pytest.raises(ValidationError) as info:
        WebhookNotification.model_validate(body)
    return [tuple(error["loc"]) for error in info.value.errors()]


# -- accepted --


def test_a_typical_payload_becomes_an_event() -> None:
    notification = WebhookNotification.model_validate(payload())
    event = to_event(notification.alerts[0], notification_id=7, event_id=9)
    assert event.fingerprint == "c6a1b2d3e4f50617"
    assert event.status is AlertStatus.FIRING
    assert event.starts_at == datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert event.labels["app"] == "cart"
    assert event.annotations == {"summary": "canary error rate above 5%"}
    assert event.generator_url.startswith("http://prometheus:9090/")
    assert (event.notification_id, event.event_id) == (7, 9)
    assert event.alertname == "CanaryErrorRate"


def test_unknown_fields_are_accepted() -> None:
    body = payload(notification_reason="repeat", routeLabels={"team": "shop"})
    body["alerts"][0]["someFutureField"] = {"x": 1}
    notification = WebhookNotification.model_validate(body)
    assert notification.alerts[0].fingerprint == "c6a1b2d3e4f50617"


def test_nine_fractional_digits_are_kept_to_the_microsecond() -> None:
    alert = WebhookNotification.model_validate(with_alert(startsAt="2025-03-01T12:00:00.123456789Z")).alerts[0]
    assert to_event(alert).starts_at == datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_zero_ends_at_while_firing_becomes_none() -> None:
    alert = WebhookNotification.model_validate(payload()).alerts[0]
    assert to_event(alert).ends_at is None


def test_real_ends_at_of_a_resolution_is_kept_in_utc() -> None:
    body = with_alert(status="resolved", endsAt="2025-03-01T14:05:00.5+02:00")
    body["status"] = "resolved"
    event = to_event(WebhookNotification.model_validate(body).alerts[0])
    assert event.status is AlertStatus.RESOLVED
    assert event.ends_at == datetime(2025, 3, 1, 12, 5, 0, 500000, tzinfo=UTC)
    assert event.ends_at.utcoffset() == UTC.utcoffset(None)


def test_offsets_are_normalised_to_utc_so_identity_matches_across_peers() -> None:
    utc = to_event(WebhookNotification.model_validate(with_alert(startsAt="2025-03-01T12:00:00Z")).alerts[0])
    offset = to_event(WebhookNotification.model_validate(with_alert(startsAt="2025-03-01T13:00:00+01:00")).alerts[0])
    assert utc.identity == offset.identity
    assert offset.starts_at.tzinfo == UTC


def test_missing_ends_at_is_allowed() -> None:
    body = payload()
    del body["alerts"][0]["endsAt"]
    assert to_event(WebhookNotification.model_validate(body).alerts[0]).ends_at is None


def test_regexp_quoted_receiver_is_kept_verbatim() -> None:
    notification = WebhookNotification.model_validate(payload(receiver="web\\.hook"))
    assert notification.receiver == "web\\.hook"


def test_truncated_alerts_are_accepted_and_recorded() -> None:
    assert WebhookNotification.model_validate(payload(truncatedAlerts=12)).truncatedAlerts == 12


def test_missing_optional_fields_take_defaults() -> None:
    body = payload()
    for key in ("truncatedAlerts", "groupLabels", "commonLabels", "commonAnnotations", "externalURL"):
        del body[key]
    for key in ("annotations", "generatorURL"):
        del body["alerts"][0][key]
    notification = WebhookNotification.model_validate(body)
    assert notification.truncatedAlerts == 0
    assert notification.externalURL == ""
    assert to_event(notification.alerts[0]).annotations == {}


def test_event_identity_ignores_external_url_and_receiver() -> None:
    one = WebhookNotification.model_validate(payload(externalURL="http://am-0:9093", receiver="a"))
    two = WebhookNotification.model_validate(payload(externalURL="http://am-1:9093", receiver="web\\.hook"))
    assert to_event(one.alerts[0]) == to_event(two.alerts[0])


# -- rejected, naming the field --


def test_missing_alerts_is_rejected() -> None:
    body = payload()
    del body["alerts"]
    assert error_locs(body) == [("alerts",)]


def test_empty_alerts_is_rejected() -> None:
    assert error_locs(payload(alerts=[])) == [("alerts",)]


def test_wrong_notification_status_is_rejected() -> None:
    assert error_locs(payload(status="pending")) == [("status",)]


def test_wrong_alert_status_is_rejected() -> None:
    assert error_locs(with_alert(status="FIRING")) == [("alerts", 0, "status")]


@pytest.mark.parametrize("stamp", ["2025-03-01T12:00:00", "2025-03-01T12:00:00.123456789"])
def test_naive_timestamp_is_rejected(stamp: str) -> None:
    assert error_locs(with_alert(startsAt=stamp)) == [("alerts", 0, "startsAt")]


def test_naive_ends_at_is_rejected() -> None:
    assert error_locs(with_alert(endsAt="2025-03-01T12:00:00")) == [("alerts", 0, "endsAt")]


@pytest.mark.parametrize("value", [5, 1.5, True, None, ["a"]])
def test_non_string_label_value_is_rejected(value: object) -> None:
    body = payload()
    body["alerts"][0]["labels"]["severity"] = value
    assert error_locs(body) == [("alerts", 0, "labels", "severity")]


@pytest.mark.parametrize("version", ["3", "5", 4, ""])
def test_version_other_than_4_is_rejected(version: object) -> None:
    assert error_locs(payload(version=version)) == [("version",)]


@pytest.mark.parametrize("fingerprint", ["", "abc def", "abc/../x", "x" * 129, "ünïcode", 12345])
def test_bad_fingerprint_is_rejected(fingerprint: object) -> None:
    assert error_locs(with_alert(fingerprint=fingerprint)) == [("alerts", 0, "fingerprint")]


def test_negative_truncated_alerts_is_rejected() -> None:
    assert error_locs(payload(truncatedAlerts=-1)) == [("truncatedAlerts",)]


def test_errors_in_several_alerts_name_each_index() -> None:
    body = payload()
    good = body["alerts"][0]
    body["alerts"] = [good, good | {"fingerprint": "bad fp"}, good | {"startsAt": "yesterday"}]
    assert error_locs(body) == [("alerts", 1, "fingerprint"), ("alerts", 2, "startsAt")]


@pytest.mark.parametrize("field", ["startsAt", "endsAt"])
def test_every_accepted_timestamp_converts(field: str) -> None:
    try:
        notification = WebhookNotification.model_validate(with_alert(**{field: "0001-01-01T00:00:00+02:00"}))
    except ValidationError as exc:  # rejecting it with a field path is a fine fix too
        assert [tuple(e["loc"]) for e in exc.errors()] == [("alerts", 0, field)]
        return
    to_event(notification.alerts[0])


# -- bounds: what Go/Prometheus tooling can represent, and what SQLite can store --


@pytest.mark.parametrize(
    "stamp",
    [
        "1970-01-01T00:00:00Z",
        "1970-01-01T01:00:00+01:00",  # the same instant
        "2262-04-11T23:47:16Z",  # the last whole second an int64 of nanoseconds holds
        "2262-04-11T23:47:15.999999999Z",
    ],
)
@pytest.mark.parametrize("field", ["startsAt", "endsAt"])
def test_timestamps_at_the_edges_of_the_range_are_accepted(field: str, stamp: str) -> None:
    notification = WebhookNotification.model_validate(with_alert(**{field: stamp}))
    assert to_event(notification.alerts[0]).starts_at.tzinfo is UTC


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00Z",  # the zero time means "still firing" for endsAt only
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:59:59+01:00",
        "2262-04-11T23:47:16.000001Z",
        "2262-04-12T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_starts_at_outside_the_range_is_rejected_naming_the_field(stamp: str) -> None:
    assert error_locs(with_alert(startsAt=stamp)) == [("alerts", 0, "startsAt")]


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:01Z", "0001-01-02T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z"]
)
def test_ends_at_outside_the_range_is_rejected_unless_it_is_the_zero_time(stamp: str) -> None:
    assert error_locs(with_alert(endsAt=stamp)) == [("alerts", 0, "endsAt")]


def test_the_range_is_what_an_int64_of_nanoseconds_holds() -> None:
    assert webhook.LATEST_TIMESTAMP - webhook.EARLIEST_TIMESTAMP == timedelta(seconds=(2**63 - 1) // 10**9)
    assert webhook.MAX_TRUNCATED_ALERTS == 2**63 - 1


def test_truncated_alerts_up_to_sqlite_integer_are_accepted() -> None:
    assert WebhookNotification.model_validate(payload(truncatedAlerts=2**63 - 1)).truncatedAlerts == 2**63 - 1


@pytest.mark.parametrize("value", [2**63, 2**64, 10**30])
def test_truncated_alerts_past_sqlite_integer_are_rejected(value: int) -> None:
    assert error_locs(payload(truncatedAlerts=value)) == [("truncatedAlerts",)]
