"""Issue 14: Slack messages that never mislead on-call. Links are never cut, a long alerts list says how many
more there are, suggested commands fit the message, and follow-ups read for people."""

from __future__ import annotations

import re
from typing import Any

import orjson
from incidents import rolled_back

from responder.notify.destinations.slack.blocks import followup_message, incident_message
from responder.notify.incident import Incident, Links, commands

LINKS = Links(
    public_url="https://responder.example.com",
    dashboard_url="https://grafana.example.com/d/canary?var-namespace={namespace}&var-app={app}"
    "&from={from_ms}&to={to_ms}",
    alertmanager_url="https://alertmanager.example.com",
    runbook_url="https://runbooks.example.com/canary",
)
INCIDENT_URL = "https://responder.example.com/api/v1/incidents/shop:checkout-canary:20261127T204426.695970Z"


def realistic_generator_url(n: int) -> str:
    """About 650 characters, as Prometheus writes them for the shipped recording rules."""
    expr = (
        '(sum by (namespace, app) (rate(http_requests_total{namespace="shop",app="checkout",track="canary",'
        f'code=~"5.."}}[1m])) / sum by (namespace, app) (rate(http_requests_total{{track="canary",n="{n}"}}[1m])))'
    )
    url = f"http://prometheus-k8s-0.prometheus-operated.monitoring.svc:9090/graph?g0.expr={expr}&g0.tab=1"
    return (url + "&g0.range_input=1h&g0.stacked=0&g0.show_exemplars=0&g0.end_input=" + "x" * 650)[:650]


def an_alert(n: int, *, description: str = "canary 5xx ratio 12.5% (threshold 5%)") -> dict[str, Any]:
    return {
        "event_id": n,
        "notification_id": 7,
        "fingerprint": f"fp{n}",
        "status": "firing",
        "starts_at": "2026-11-27T20:40:00Z",
        "labels": {"alertname": f"CanaryAlert{n}", "namespace": "shop", "app": "checkout", "severity": "critical"},
        "annotations": {"description": description, "runbook_url": "https://runbooks.example.com/canary"},
        "generator_url": realistic_generator_url(n),
    }


def an_incident(**changes: Any) -> Incident:
    values: dict[str, Any] = {
        "reason": "CanaryHighErrorRate: 5xx ratio above 5%",
        "alerts": [an_alert(1)],
    }
    return rolled_back(**{**values, **changes})


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    texts = [b["text"]["text"] for b in blocks if b.get("type") == "section" and "text" in b]
    texts += [f["text"] for b in blocks for f in b.get("fields", [])]
    texts += [e["text"] for b in blocks if b.get("type") == "context" for e in b["elements"]]
    return texts


def whole_links(text: str) -> list[str]:
    return re.findall(r"<([^<>|]+)\|[^<>]*>", text)


class TestLinksAreNeverCut:
    def test_three_alerts_with_long_sources_keep_the_incident_and_runbook_links(self) -> None:
        incident = an_incident(alerts=[an_alert(1), an_alert(2), an_alert(3)])
        blocks = incident_message(incident, LINKS).blocks
        texts = section_texts(blocks)
        assert all(len(t) <= 3000 for t in texts)
        for text in texts:  # no text ends inside a link: every "<" is closed
            assert text.count("<") == text.count(">"), text[-200:]
        links = [url for t in texts for url in whole_links(t)]
        assert INCIDENT_URL in links
        assert "https://runbooks.example.com/canary" in links
        assert any(url.startswith("https://grafana.example.com/d/canary?") for url in links)
        assert len(blocks) <= 50  # Slack's limit of blocks per message

    def test_an_alert_source_too_long_for_slack_is_left_out_and_said_so(self) -> None:
        alert = {**an_alert(1), "generator_url": "http://prometheus:9090/graph?g0.expr=" + "y" * 3200}
        texts = section_texts(incident_message(an_incident(alerts=[alert]), LINKS).blocks)
        assert all(len(t) <= 3000 for t in texts)
        assert INCIDENT_URL in [url for t in texts for url in whole_links(t)]
        assert any("too long" in t for t in texts)

    def test_a_long_alerts_list_ends_with_and_n_more_and_a_link(self) -> None:
        alerts = [an_alert(n, description="canary error ratio above threshold " + "z" * 150) for n in range(60)]
        texts = section_texts(incident_message(an_incident(alerts=alerts), LINKS).blocks)
        [listing] = [t for t in texts if t.startswith("*Alerts*")]
        assert len(listing) <= 3000
        more = re.search(r"… and (\d+) more", listing)
        assert more is not None, listing[-300:]
        shown = listing.count("• ")
        assert shown + int(more.group(1)) == 60
        assert INCIDENT_URL in whole_links(listing)


class TestSuggestedCommands:
    def test_a_cap_held_message_offers_the_replay_that_acts_and_never_restore(self) -> None:
        held = an_incident(kind="held", status="held")
        text = "\n".join(commands(held))
        assert "canary-responder replay --notification-id 7 --force --execute" in text
        assert "restore" not in text
        # the plain dry-run replay answers DUPLICATE for an alert already seen: never offered bare
        assert not re.search(r"--notification-id 7\s+#", text)

    def test_a_hold_while_paused_says_to_resume_first(self) -> None:
        text = "\n".join(commands(an_incident(kind="paused_hold", status="paused_hold")))
        assert text.index("canary-responder resume") < text.index("--force --execute")
        assert "restore" not in text

    def test_notify_only_and_refused_offer_no_restore(self) -> None:
        for kind in ("notify", "refused"):
            assert not any("restore" in line for line in commands(an_incident(kind=kind, status=kind)))

    def test_a_rollback_held_because_stable_is_down_offers_the_override_not_a_replay_that_would_hold_again(
        self,
    ) -> None:
        text = "\n".join(commands(an_incident(status="held")))
        assert "canary-responder rollback shop checkout-canary --despite-stable" in text
        assert "--execute" not in text and "restore" not in text

    def test_a_done_rollback_dry_run_replay_bypasses_dedupe(self) -> None:
        text = "\n".join(commands(an_incident()))
        assert not re.search(r"--notification-id 7\s+#", text)  # would only say DUPLICATE
        assert "canary-responder restore shop checkout-canary" in text


class TestFollowupsForPeople:
    def test_no_internal_codes(self) -> None:
        restored = followup_message("i", "restored", {"actor": "alice", "status": "restored"}, LINKS, threaded=True)
        assert restored.text.startswith("Restored by alice") and not restored.text.endswith("restored")
        failed = followup_message("i", "restore_failed", {"actor": "bob", "status": "failed"}, LINKS, threaded=True)
        assert "restore_failed" not in failed.text and "Restore by bob failed" in failed.text
        refused = followup_message("i", "restore_refused", {"actor": "bob", "status": "refused"}, LINKS, threaded=True)
        assert "restore_refused" not in refused.text and "refused" in refused.text
        done = followup_message("i", "rollback", {"status": "done"}, LINKS, threaded=True)
        assert done.text != "Rollback finished: done." and "scaled to zero" in done.text

    def test_without_threads_each_followup_names_the_target(self) -> None:
        data = {"alertname": "X", "fingerprint": "f", "target": "shop/checkout-canary"}
        plain = followup_message("shop:checkout-canary:1", "resolved", data, LINKS, threaded=False)
        assert "shop/checkout-canary" in plain.text
        threaded = followup_message("shop:checkout-canary:1", "resolved", data, LINKS, threaded=True)
        assert "shop/checkout-canary" not in threaded.text


def test_messages_stay_valid_json_for_slack() -> None:
    orjson.dumps(incident_message(an_incident(alerts=[an_alert(n) for n in range(8)]), LINKS).blocks)
