"""Messages, links and reports are pure functions of plain data; the retry schedule and Slack error mapping too."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson
from incidents import rolled_back

from responder.notify.destinations.slack.blocks import fallback_message, followup_message, incident_message
from responder.notify.destinations.slack.client import SlackFailure, classify
from responder.notify.incident import Incident, Links, MetricsSnapshot, TrackMetrics, silence_link, time_range_ms
from responder.notify.report import report, report_markdown
from responder.retry import Backoff

LINKS = Links(
    public_url="https://responder.example.com/",
    dashboard_url="https://grafana/d/c?ns={namespace}&app={app}&from={from_ms}&to={to_ms}",
    alertmanager_url="https://am.example.com",
    runbook_url="https://runbooks/default",
)
ALERT: dict[str, Any] = {
    "event_id": 3,
    "notification_id": 7,
    "fingerprint": "abc",
    "status": "firing",
    "starts_at": "2026-11-27T20:40:00Z",
    "labels": {"alertname": "CanaryHighErrorRate", "namespace": "shop", "app": "checkout", "severity": "critical"},
    "annotations": {"description": "12.5% of the canary's requests failed <5xx> (threshold 5%)"},
    "generator_url": "http://prom/graph?g0.expr=x&g0.tab=1",
}
STEPS = {
    "scale_zero": {"result": "done", "duration_ms": 4.2, "attempts": 1, "before": {"replicas": 2}},
    "check": {"result": "done", "duration_ms": 1.5, "attempts": 1, "before": {"images": ["shop/checkout:1.5.0"]}},
    "traffic_off": {
        "result": "done",
        "duration_ms": 3.1,
        "attempts": 2,
        "before": {"annotations": {"nginx.ingress.kubernetes.io/canary": "true"}},
    },
}


def incident(**changes: Any) -> Incident:
    values: dict[str, Any] = {
        "reason": "CanaryHighErrorRate: 5xx ratio above 5%",
        "steps": STEPS,
        "alerts": [ALERT],
        "metrics": MetricsSnapshot(
            at="2026-11-27T20:44:26Z",
            canary=TrackMetrics(error_rate=0.125, p95_s=0.45, request_rate=12.0),
            stable=TrackMetrics(error_rate=0.001, p95_s=None, request_rate=240.0),
        ),
    }
    return rolled_back(**{**values, **changes})


def text_of(blocks: list[dict[str, Any]]) -> str:
    return orjson.dumps(blocks).decode()


def test_rollback_message_has_headline_alerts_metrics_actions_links_and_commands() -> None:
    message = incident_message(incident(), LINKS)
    text = text_of(message.blocks)
    assert message.text == "Canary rolled back: shop/checkout-canary"
    assert message.blocks[0]["type"] == "header" and len(message.blocks[0]["text"]["text"]) <= 150
    assert "12.5% of the canary's requests failed &lt;5xx&gt; (threshold 5%)" in text  # escaped mrkdwn
    assert "canary *12.50%* vs stable 0.10%" in text and "450 ms" in text and "unavailable" in text
    assert text.index("`check`") < text.index("`traffic_off`") < text.index("`scale_zero`")
    assert "(2 attempt(s))" in text
    assert "<http://prom/graph?g0.expr=x&amp;g0.tab=1|Alert source (CanaryHighErrorRate)>" in text
    assert "https://runbooks/default" in text  # no runbook annotation: the configured default
    assert "https://responder.example.com/api/v1/incidents/shop:checkout-canary:20261127T204426.695970Z" in text
    assert "canary-responder replay --notification-id 7 " in text
    assert "canary-responder replay --notification-id 7 --force --execute" in text
    assert "canary-responder restore shop checkout-canary" in text
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in message.blocks)


def test_the_undo_command_names_the_cluster_and_is_only_offered_when_something_changed() -> None:
    """Issue 18: in a multi-cluster setup the suggested restore left the cluster out (ambiguous, and refused)."""
    west = text_of(incident_message(incident(cluster="west", target="west/shop/checkout-canary"), LINKS).blocks)
    assert "canary-responder restore shop checkout-canary --cluster west" in west
    single = text_of(incident_message(incident(), LINKS).blocks)
    assert "canary-responder restore shop checkout-canary  #" in single and "--cluster" not in single
    for quiet in (incident(status="refused"), incident(status="dry_run"), incident(kind="held", status="held")):
        assert "canary-responder restore" not in text_of(incident_message(quiet, LINKS).blocks)


def test_verdicts_per_outcome() -> None:
    assert "manual action required" in incident_message(incident(status="failed"), LINKS).text
    assert incident_message(incident(status="dry_run"), LINKS).text.startswith("Dry run")
    held = incident_message(incident(kind="held", status="held", steps={}), LINKS)
    assert "rollback cap" in held.text and "Actions" not in text_of(held.blocks)
    assert "not a canary" in incident_message(incident(status="refused"), LINKS).text


def test_metrics_unavailable_is_said_so() -> None:
    missing = MetricsSnapshot(at="x", unavailable="no Prometheus URL configured")
    text = text_of(incident_message(incident(metrics=missing), LINKS).blocks)
    assert "_unavailable_ (no Prometheus URL configured)" in text


def test_silence_link_prefills_the_exact_label_set() -> None:
    url = silence_link({"alertname": "A", "app": 'we"ird'}, LINKS)
    assert url is not None and url.startswith("https://am.example.com/#/silences/new?filter=")
    assert unquote(url.split("filter=", 1)[1]) == '{alertname="A", app="we\\"ird"}'
    assert silence_link({"a": "b"}, Links()) is None


def test_dashboard_time_range_covers_the_alert_and_the_decision() -> None:
    start, end = time_range_ms(incident())
    assert start == 1795812000000 - 30 * 60 * 1000  # 30 minutes before the alert started (20:40)
    assert end > 1795812266000  # after the decision (20:44:26)
    text = text_of(incident_message(incident(), LINKS).blocks)
    assert f"https://grafana/d/c?ns=shop&amp;app=checkout&amp;from={start}&amp;to={end}" in text


def test_followups_thread_or_name_the_incident() -> None:
    threaded = followup_message("i:d:1", "resolved", {"alertname": "X", "fingerprint": "f"}, LINKS, threaded=True)
    assert threaded.text == "Resolved: X (f) is no longer firing."
    plain = followup_message("i:d:1", "rollback", {"status": "failed"}, LINKS, threaded=False)
    assert plain.text == "Update on incident i:d:1: Rollback failed: manual action required."
    restored = followup_message("i:d:1", "restored", {"actor": "alice"}, LINKS, threaded=True)
    assert restored.text.startswith("Restored by alice")
    assert "Held while paused" in followup_message("i", "paused_hold", {}, LINKS, threaded=True).text


def test_report_follows_the_post_rollback_template() -> None:
    data = report(incident(), LINKS, [{"kind": "resolved", "alertname": "X", "fingerprint": "f", "at": "t"}])
    assert data["canary_images"] == ["shop/checkout:1.5.0"]
    assert data["traffic_weight"] == "not recorded"
    assert [a["step"] for a in data["actions"]] == ["check", "traffic_off", "scale_zero"]
    assert data["metrics"]["canary"]["error_rate"] == 0.125 and data["checklist"]
    read = {"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "10"}
    weighted = dict(STEPS, check={"before": {"images": ["x"], "ingress_annotations": read}})
    assert report(incident(steps=weighted), LINKS)["traffic_weight"] == "10%"
    header = {**read, "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary"}
    with_header = dict(STEPS, check={"before": {"images": ["x"], "ingress_annotations": header}})
    assert report(incident(steps=with_header), LINKS)["traffic_weight"] == "10% (plus by header)"
    markdown = report_markdown(incident(), LINKS, [{"kind": "resolved", "alertname": "X", "fingerprint": "f"}])
    for part in (
        "- **Date:** 2026-11-27T20:44:26.695970Z",
        "- **Canary version / image:** `shop/checkout:1.5.0`",
        "- **Traffic weight at the time:** not recorded",
        "## Reason",
        "| 5xx error rate | 12.50% | 0.10% |",
        "| traffic_off | done | 3.1 ms | 2 |",
        "## Since then",
        "- [ ] ",
    ):
        assert part in markdown, part


def test_backoff_is_capped_and_honours_retry_after() -> None:
    backoff = Backoff(base_delay_s=1, max_delay_s=10, jitter=0.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]
    assert backoff.delay(1, retry_after=30) == 30
    assert backoff.delay(4, retry_after=2) == 8


def test_slack_failures_are_classified() -> None:
    assert classify(429, "") is SlackFailure.RATE_LIMITED and SlackFailure.RATE_LIMITED.retryable
    assert classify(200, "invalid_auth") is SlackFailure.AUTH and not SlackFailure.AUTH.retryable
    assert classify(404, "channel_not_found") is SlackFailure.CHANNEL
    assert classify(503, "") is SlackFailure.SERVER_ERROR
    assert classify(400, "invalid_blocks") is SlackFailure.INVALID


class TestCalendarEdges:
    """A stored alert from year 1 or 9999 used to make the report and the Slack message raise (OverflowError)."""

    def incident(self, starts_at: str) -> Incident:
        return Incident(
            id="shop:checkout-canary:20261127T204100.000000Z",
            kind="rollback",
            status="done",
            created_at="2026-11-27T20:41:00Z",
            target="shop/checkout-canary",
            namespace="shop",
            deployment="checkout-canary",
            alerts=[{**ALERT, "starts_at": starts_at}],
        )

    def test_the_window_is_bounded_and_never_overflows(self) -> None:
        for starts_at in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "not a time", ""):
            incident = self.incident(starts_at)
            start, end = time_range_ms(incident)
            assert end - start <= (24 * 60 + 45) * 60_000, starts_at
            message = incident_message(incident, LINKS)
            assert message.blocks and report(incident, LINKS)["id"] == incident.id
            assert "# Canary rolled back" in report_markdown(incident, LINKS)

    def test_the_short_form_says_what_and_where_to_look(self) -> None:
        message = fallback_message("inc-1", "rollback", "shop/checkout-canary", "KeyError", LINKS)
        assert "shop/checkout-canary" in message.text and "KeyError" in message.text
        assert "https://responder.example.com/api/v1/incidents/inc-1" in orjson.dumps(message.blocks).decode()


def test_followups_for_retries_say_what_happens_next() -> None:
    failed = followup_message(
        "i", "rollback", {"status": "failed", "retrying": True, "attempt": 2}, LINKS, threaded=True
    )
    assert "retry 2" in failed.text and "retrying while its alerts fire" in failed.text
    retry = followup_message("i", "retry", {"attempt": 1, "reason": "a new alert"}, LINKS, threaded=True)
    assert "Retrying the failed rollback (retry 1)" in retry.text
    stopped = followup_message("i", "retry_stopped", {}, LINKS, threaded=True)
    assert "No longer retrying" in stopped.text
