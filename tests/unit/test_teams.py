"""Teams cards are pure functions of the incident content: every kind of notice, hostile alert text, long link lists,
and the card checked against the Adaptive Card 1.2 fields it declares. Also the failure mapping and the settings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from incidents import rolled_back

from responder.config import ConfigError, Secrets, parse_settings
from responder.notify import build_notifiers
from responder.notify.base import Notifier
from responder.notify.destinations.teams import TeamsNotifier, TeamsSender
from responder.notify.destinations.teams.cards import (
    CARD_CONTENT_TYPE,
    CARD_VERSION,
    MAX_PAYLOAD_BYTES,
    CardTooLarge,
    TeamsMessage,
    encode,
    fallback_card,
    followup_card,
    incident_card,
)
from responder.notify.destinations.teams.client import TeamsFailure, classify, redactor
from responder.notify.incident import Incident, Links, MetricsSnapshot, TrackMetrics, link_list

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
    "annotations": {"description": "canary 5xx ratio 12.5% (threshold 5%)"},
    "generator_url": "http://prom/graph?g0.expr=x&g0.tab=1",
}
STEPS = {
    "scale_zero": {"result": "done", "duration_ms": 4.2, "attempts": 1},
    "check": {"result": "done", "duration_ms": 1.5, "attempts": 1},
    "traffic_off:nginx/checkout-canary": {"result": "done", "duration_ms": 3.1, "attempts": 2},
}
ID = "shop:checkout-canary:20261127T204426.695970Z"


def incident(**changes: Any) -> Incident:
    values: dict[str, Any] = {
        "reason": "CanaryHighErrorRate: canary 5xx ratio 12.5%",
        "steps": STEPS,
        "alerts": [ALERT],
        "metrics": MetricsSnapshot(
            at="2026-11-27T20:44:26Z",
            canary=TrackMetrics(error_rate=0.125, p95_s=2.4, request_rate=12.0),
            stable=TrackMetrics(error_rate=0.002, p95_s=0.31, request_rate=240.0),
        ),
    }
    return rolled_back(**{**values, **changes})


# -- the card, checked against the Adaptive Card 1.2 schema fields it uses --

_ELEMENT = {"type", "id", "spacing", "separator", "height", "fallback", "isVisible", "requires"}
_FIELDS: dict[str, set[str]] = {  # per type: the properties schema 1.2 defines (nothing from 1.3 on)
    "AdaptiveCard": {"type", "$schema", "version", "body", "actions", "fallbackText", "selectAction", "style", "lang"}
    | {"speak", "minHeight", "backgroundImage", "verticalContentAlignment", "msteams"},  # msteams: Teams' extension
    "Container": _ELEMENT
    | {"items", "style", "bleed", "selectAction", "verticalContentAlignment", "backgroundImage", "minHeight"},
    "ColumnSet": _ELEMENT | {"columns", "style", "bleed", "selectAction", "minHeight", "horizontalAlignment"},
    "Column": _ELEMENT
    | {"items", "width", "style", "bleed", "selectAction", "verticalContentAlignment", "backgroundImage"}
    | {"minHeight"},
    "TextBlock": _ELEMENT
    | {"text", "color", "fontType", "horizontalAlignment", "isSubtle", "maxLines", "size", "weight", "wrap"},
    "RichTextBlock": _ELEMENT | {"inlines", "horizontalAlignment"},
    "TextRun": {"type", "text", "color", "fontType", "highlight", "isSubtle", "italic", "selectAction", "size"}
    | {"strikethrough", "weight"},
    "ActionSet": _ELEMENT | {"actions"},
    "Action.OpenUrl": {"type", "url", "title", "iconUrl", "id", "style", "fallback", "requires"},
}
_REQUIRED = {
    "AdaptiveCard": {"version", "body"},
    "Container": {"items"},
    "ColumnSet": {"columns"},
    "Column": {"items"},
    "TextBlock": {"text"},
    "RichTextBlock": {"inlines"},
    "TextRun": {"text"},
    "ActionSet": {"actions"},
    "Action.OpenUrl": {"url"},
}
_ENUMS = {
    "style": {"default", "emphasis", "good", "attention", "warning", "accent"},
    "weight": {"default", "lighter", "bolder"},
    "size": {"default", "small", "medium", "large", "extralarge"},
    "fontType": {"default", "monospace"},
    "spacing": {"default", "none", "small", "medium", "large", "extralarge", "padding"},
    "color": {"default", "dark", "light", "accent", "good", "warning", "attention"},
}
_BOOLEANS = {"wrap", "isSubtle", "italic", "separator", "bleed", "highlight", "strikethrough"}
_CHILDREN = {  # where each list of children sits, and what it may hold
    "body": {"Container", "ColumnSet", "TextBlock", "RichTextBlock", "ActionSet"},
    "items": {"Container", "ColumnSet", "TextBlock", "RichTextBlock", "ActionSet"},
    "columns": {"Column"},
    "inlines": {"TextRun"},
    "actions": {"Action.OpenUrl"},
}


def problems(node: dict[str, Any], where: str = "card") -> Iterator[str]:
    kind = node.get("type")
    if kind not in _FIELDS:
        yield f"{where}: unknown type {kind!r}"
        return
    yield from (f"{where}: {kind} has no field {k!r} in 1.2" for k in set(node) - _FIELDS[kind])
    yield from (f"{where}: {kind} needs {k!r}" for k in _REQUIRED.get(kind, set()) - set(node))
    for key, value in node.items():
        if key in _ENUMS and str(value).lower() not in _ENUMS[key]:
            yield f"{where}.{key}: {value!r}"
        if key in _BOOLEANS and not isinstance(value, bool):
            yield f"{where}.{key}: not a boolean"
        if key in ("text", "title", "url") and not isinstance(value, str):
            yield f"{where}.{key}: not a string"
        if key == "width" and not (value in ("auto", "stretch") or re.fullmatch(r"\d+px", str(value))):
            yield f"{where}.width: {value!r}"
        if key == "url" and not re.fullmatch(r"https?://[^\s<>\"{}|\\^`]+", str(value)):
            yield f"{where}.url: not an absolute http(s) URI: {value!r}"
        if key in _CHILDREN and key != "actions" or (key == "actions" and kind == "ActionSet"):
            if not isinstance(value, list) or not value:
                yield f"{where}.{key}: not a non-empty list"
                continue
            for i, child in enumerate(value):
                if not isinstance(child, dict) or child.get("type") not in _CHILDREN[key]:
                    yield f"{where}.{key}[{i}]: {child.get('type') if isinstance(child, dict) else child!r} here"
                else:
                    yield from problems(child, f"{where}.{key}[{i}]")


def valid(message: TeamsMessage) -> dict[str, Any]:
    """The card of a message whose envelope and card are valid; fails the test with every problem otherwise."""
    payload = message.payload
    assert payload["type"] == "message" and len(payload["attachments"]) == 1
    assert payload["attachments"][0]["contentType"] == CARD_CONTENT_TYPE == "application/vnd.microsoft.card.adaptive"
    card = message.card
    assert card["version"] == CARD_VERSION == "1.2"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert list(problems(card)) == []
    assert len(encode(payload)) <= MAX_PAYLOAD_BYTES
    return card


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def runs(card: dict[str, Any]) -> str:
    """What a reader sees, line by line: each RichTextBlock's runs joined, each TextBlock's text."""
    lines = []
    for node in walk(card):
        if node.get("type") == "RichTextBlock":
            lines.append("".join(r["text"] for r in node["inlines"]))
        elif node.get("type") == "TextBlock":
            lines.append(node["text"])
    return "\n".join(lines)


def markdown_texts(card: dict[str, Any]) -> list[str]:
    """Every text Teams reads as Markdown: TextBlocks and the fallback text."""
    return [n["text"] for n in walk(card) if n.get("type") == "TextBlock"] + [card.get("fallbackText", "")]


def buttons(card: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n["title"], n["url"]) for n in walk(card) if n.get("type") == "Action.OpenUrl"]


# -- every kind of notice --


def test_rollback_card_carries_the_same_content_as_the_slack_message() -> None:
    message = incident_card(incident(), LINKS)
    card = valid(message)
    seen = runs(card)
    assert message.text == "Canary rolled back: shop/checkout-canary"
    band = card["body"][0]
    assert band["style"] == "attention" and band["items"][0]["inlines"][0]["text"].endswith(message.text)
    assert "canary traffic off and canary scaled to zero; stable untouched" in seen  # verdict
    assert "shop/checkout-canary" in seen and "2026-11-27T20:44:26.695970Z" in seen  # where, when
    assert "CanaryHighErrorRate: canary 5xx ratio 12.5%" in seen  # reason
    assert (
        "• CanaryHighErrorRate [severity=critical] since 2026-11-27T20:40:00Z: canary 5xx ratio 12.5% (threshold 5%)"
        in seen
    )
    for number in ("12.50%", "0.20%", "2.40 s", "310 ms", "12.00 req/s", "240.00 req/s"):  # canary vs stable
        assert f"\n{number}\n" in f"\n{seen}\n", number
    assert (
        seen.index("check: done in 1.5 ms (1 attempt(s))")
        < seen.index("traffic_off:nginx/checkout-canary: done in 3.1 ms (2 attempt(s))")
        < seen.index("scale_zero: done in 4.2 ms (1 attempt(s))")
    )
    assert buttons(card) == link_list(incident(), LINKS)
    assert ("Audit record", f"https://responder.example.com/api/v1/incidents/{ID}") in buttons(card)
    assert "canary-responder replay --notification-id 7 --force  # dry-run: what it would decide now" in seen
    assert "canary-responder replay --notification-id 7 --force --execute  # act again anyway" in seen
    assert "canary-responder restore shop checkout-canary  # undo the rollback" in seen
    assert f"incident {ID}" in seen
    headings = [n["text"] for n in card["body"] if n["type"] == "TextBlock"]
    assert headings == ["Alerts", "Canary vs stable at decision time", "Actions", "Links", "Replay and undo"]


def test_failed_rollback_says_manual_action_and_shows_the_failed_step() -> None:
    steps = {**STEPS, "scale_zero": {"result": "failed", "duration_ms": 9, "attempts": 4, "message": "403 forbidden"}}
    message = incident_card(incident(status="failed", steps=steps), LINKS)
    card = valid(message)
    assert message.text == "Rollback FAILED: shop/checkout-canary, manual action required"
    assert card["body"][0]["style"] == "attention"
    seen = runs(card)
    assert "a step failed (see actions); manual action required" in seen
    assert "scale_zero: failed in 9 ms (4 attempt(s)): 403 forbidden" in seen
    retrying = incident_card(incident(status="failed", retrying=True), LINKS)
    assert retrying.text.endswith("retrying while its alerts fire")


def test_held_and_notify_only_cards_change_nothing_and_have_no_actions() -> None:
    held = incident_card(incident(kind="held", status="held", steps={}), LINKS)
    card = valid(held)
    assert held.text == "Rollback held: shop/checkout-canary (rollback cap reached), a human must decide"
    assert card["body"][0]["style"] == "warning"
    assert "nothing was changed: the global rollback cap is reached" in runs(card)
    assert "Actions" not in [n.get("text") for n in card["body"]]

    notify = incident_card(incident(kind="notify", status="notify", steps={}, target=None), LINKS)
    card = valid(notify)
    assert notify.text == "Canary alert: CanaryHighErrorRate on shop/checkout"
    assert "notify-only alert: nothing was changed" in runs(card)
    assert "canary-responder restore" not in runs(card)  # nothing was changed: nothing to undo


def test_metrics_unavailable_and_no_alerts_are_said_so() -> None:
    missing = MetricsSnapshot(at="x", unavailable="no Prometheus URL configured")
    card = valid(incident_card(incident(metrics=missing, alerts=[]), LINKS))
    seen = runs(card)
    assert "unavailable (no Prometheus URL configured)" in seen and "none recorded" in seen


def test_followups_are_cards_that_name_the_incident() -> None:
    resolved = followup_card(ID, "resolved", {"alertname": "X", "fingerprint": "f"}, LINKS, threaded=False)
    card = valid(resolved)
    assert resolved.text == f"Update on incident {ID}: Resolved: X (f) is no longer firing."
    assert card["body"][0]["style"] == "good" and resolved.text in runs(card)
    assert buttons(card) == [("Audit record", f"https://responder.example.com/api/v1/incidents/{ID}")]
    failed = followup_card(ID, "rollback", {"status": "failed"}, LINKS, threaded=False)
    assert valid(failed)["body"][0]["style"] == "attention"
    assert failed.text == f"Update on incident {ID}: Rollback failed: manual action required."


def test_the_short_form_says_what_and_where_to_look() -> None:
    message = fallback_card("inc-1", "rollback", "shop/checkout-canary", "CardTooLarge", LINKS)
    card = valid(message)
    assert "shop/checkout-canary" in message.text and "CardTooLarge" in message.text
    assert buttons(card) == [("Audit record", "https://responder.example.com/api/v1/incidents/inc-1")]


def test_without_public_url_the_audit_path_is_text_not_a_broken_button() -> None:
    card = valid(followup_card("i:1", "resolved", {}, Links(), threaded=False))
    assert buttons(card) == [] and "Audit record: /api/v1/incidents/i:1" in runs(card)


# -- hostile alert text, long link lists, the size limit --

HOSTILE = [
    "[click me](https://evil.example/phish)",
    "**bold** _it_ <at>everyone</at> <script>alert(1)</script>",
    '"},{"type":"Action.Submit"}]',
    "line\nbreak\r\n- list\n1. item",
    "\u202eRTL override \u0000 nul \U0001f525",
]


OUR_WORDS = set(markdown_texts(incident_card(incident(), LINKS).card))  # headings, labels, our numbers


def hostile_incident(text: str) -> Incident:
    alert = {
        **ALERT,
        "labels": {"alertname": text, "namespace": "shop", "app": "checkout", "severity": text, "action": text},
        "annotations": {"description": text, "summary": text, "runbook_url": "javascript:alert(document.cookie)"},
        "generator_url": f"http://prom/graph?g0.expr={text}",
    }
    steps = {**STEPS, "scale_zero": {"result": text, "duration_ms": text, "attempts": 1, "message": text}}
    return incident(alerts=[alert], reason=text, target=f"shop/{text}", steps=steps)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_labels_and_annotations_cannot_break_the_card(text: str) -> None:
    card = valid(incident_card(hostile_incident(text), LINKS))
    assert set(markdown_texts(card)) <= OUR_WORDS  # alert text only as TextRun text or a button title
    assert text in runs(card)
    urls = [url for _, url in buttons(card)]
    assert not any(url.startswith("javascript:") for url in urls)
    assert "Runbook: javascript:alert(document.cookie)" in runs(card)  # shown, whole, but not a button


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300), st.text(max_size=40))
def test_any_label_text_makes_a_valid_card(text: str, name: str) -> None:
    alert = {**ALERT, "labels": {**ALERT["labels"], "alertname": name, "team": text}}
    alert["annotations"] = {"description": text}
    card = valid(incident_card(incident(alerts=[alert], reason=text), LINKS))
    assert set(markdown_texts(card)) <= OUR_WORDS


def test_long_link_lists_are_never_cut() -> None:
    alerts = []
    for i in range(5):
        labels = {f"label_{j}": f"value-{i}-{j}-" + "x" * 40 for j in range(12)}
        labels.update(alertname=f"CanaryAlert{i}", namespace="shop", app="checkout")
        alerts.append({**ALERT, "labels": labels, "generator_url": f"http://prom/graph?g0.expr={'y' * 900}&i={i}"})
    subject = incident(alerts=alerts)
    expected = link_list(subject, LINKS)
    assert len(expected) == 13 and max(len(url) for _, url in expected) > 900
    card = valid(incident_card(subject, LINKS))
    assert buttons(card) == expected  # every link, whole, in order
    sets = [n for n in walk(card) if n.get("type") == "ActionSet"]
    assert all(len(s["actions"]) <= 3 for s in sets)


def test_a_card_over_the_limit_loses_detail_then_goes_short_never_cutting_links() -> None:
    source = f"http://prom/graph?g0.expr={'q' * 3000}"
    wordy = [{**ALERT, "annotations": {"description": "d" * 5000}, "generator_url": source} for _ in range(12)]
    assert len(encode(incident_card(incident(alerts=wordy[:1]), LINKS).payload)) < MAX_PAYLOAD_BYTES
    card = valid(incident_card(incident(alerts=wordy), LINKS))
    assert "… and 9 more alert(s): see the audit record" in runs(card)  # compacted: 3 alerts, shorter texts
    assert buttons(card) == link_list(incident(alerts=wordy), LINKS)

    huge = [{**ALERT, "generator_url": f"http://prom/graph?g0.expr={'z' * 8000}&n={i}"} for i in range(5)]
    with pytest.raises(CardTooLarge):
        incident_card(incident(alerts=huge), LINKS)
    notifier = TeamsNotifier(TeamsSender(webhook_url="https://example.invalid/hook?sig=abcdefgh12345678"))
    short = notifier.fallback(ID, "rollback", "shop/checkout-canary", "CardTooLarge", LINKS)
    assert short.payload["attachments"][0]["content"]["version"] == "1.2"


# -- delivery results and the notifier --


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (200, None),
        (202, None),
        (429, TeamsFailure.RATE_LIMITED),
        (408, TeamsFailure.TIMEOUT),
        (500, TeamsFailure.SERVER_ERROR),
        (503, TeamsFailure.SERVER_ERROR),
        (401, TeamsFailure.AUTH),
        (403, TeamsFailure.AUTH),
        (404, TeamsFailure.AUTH),
        (400, TeamsFailure.INVALID),
        (413, TeamsFailure.INVALID),
    ],
)
def test_answers_are_classified(status: int, reason: TeamsFailure | None) -> None:
    assert classify(status) is reason
    if reason is not None:
        assert reason.retryable == (status in (408, 429) or status >= 500)


def test_the_url_and_its_pieces_are_redacted() -> None:
    path = "/workflows/abc123def456/triggers/manual/paths/invoke"
    url = f"https://prod-01.westeurope.logic.azure.com:443{path}?api-version=1&sig=s3cr3t-signature"
    redact = redactor(url)
    for text in (url, url.split("?")[0], "sig=s3cr3t-signature", path, url.replace("&", "&amp;")):
        assert "s3cr3t" not in redact(f"error at {text}") and "abc123def456" not in redact(f"error at {text}")
    sender = TeamsSender(webhook_url=url)
    assert "s3cr3t" not in repr(sender) and "abc123" not in repr(sender)


def test_the_notifier_is_a_teams_destination_without_threads() -> None:
    notifier: Notifier = TeamsNotifier(TeamsSender(webhook_url="https://example.invalid/hook"))
    assert notifier.destination == "teams" and notifier.threads is False
    message = notifier.incident(incident(), LINKS)
    assert message.text == "Canary rolled back: shop/checkout-canary"
    assert message.payload["attachments"][0]["content"]["type"] == "AdaptiveCard"


# -- settings --


def document(notifications: dict[str, Any]) -> dict[str, Any]:
    return {
        "auth": {"webhook": {"bearer_tokens": [{"env": "WH"}]}, "admin_token": {"env": "ADMIN"}},
        "safety": {"allowed_namespaces": ["shop"]},
        "targets": [{"name": "t"}],
        "notifications": notifications,
    }


def test_teams_settings_resolve_the_secret_and_build_a_notifier_next_to_slack() -> None:
    hook = "https://prod-01.logic.azure.com/workflows/w/triggers/manual/paths/invoke?sig=SECRETSIG123"
    settings = parse_settings(
        document({"teams": {"webhook_url": {"env": "TEAMS"}, "timeout": "3s"}, "slack": {"webhook_url": {"env": "S"}}})
    )
    assert settings.notifications.teams is not None
    assert settings.notifications.teams.timeout.total_seconds() == 3
    secrets = Secrets(settings, {"WH": "w", "ADMIN": "a", "TEAMS": hook, "S": "https://hooks.slack.example/x"})
    assert secrets.teams_webhook_url is not None and secrets.teams_webhook_url.get_secret_value() == hook
    assert "SECRETSIG" not in repr(secrets)
    notifiers = build_notifiers(settings, secrets)
    assert sorted(notifiers) == ["slack", "teams"] and notifiers["teams"].threads is False
    assert "SECRETSIG" not in repr(notifiers["teams"].sender)  # type: ignore[attr-defined]


def test_teams_settings_are_validated_without_showing_the_secret() -> None:
    with pytest.raises(ConfigError, match="webhook_url"):
        parse_settings(document({"teams": {"webhook_url": "https://inline.example/hook"}}))
    with pytest.raises(ConfigError, match="webhook_url"):
        parse_settings(document({"teams": {}}))
    settings = parse_settings(document({"teams": {"webhook_url": {"env": "TEAMS"}}}))
    assert settings.notifications.teams is not None
    assert settings.notifications.teams.timeout.total_seconds() == 10
    with pytest.raises(ConfigError, match="from env \\$TEAMS is not an http") as raised:
        Secrets(settings, {"WH": "w", "ADMIN": "a", "TEAMS": "ftp://files.example/SECRETSIG"})
    assert "SECRETSIG" not in str(raised.value)
