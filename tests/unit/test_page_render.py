"""The incident page's HTML as a pure function of the incident (responder.http.pages.render_incident): the
timeline's order through a restore, the evidence whatever shape it was stored in, and hostile text escaped
everywhere. Browser and HTTP behaviour: tests/integration/test_incident_pages*.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.http.pages import render_incident
from responder.http.pages_view import MAX_LOG_CHARS, evidence, timeline
from responder.notify.incident import Incident, Links
from responder.notify.signing import PageSigner

LINKS = Links(public_url="https://responder.example.com", pages=PageSigner(key=b"k" * 32, ttl_s=3600))
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&"
ALERT: dict[str, Any] = {
    "status": "firing",
    "starts_at": "2026-11-27T20:40:00Z",
    "notification_id": 7,
    "labels": {"alertname": "CanaryHighErrorRate", "namespace": "shop", "app": "checkout", HOSTILE: HOSTILE},
    "annotations": {"description": HOSTILE, "runbook_url": "javascript:alert(3)"},
    "generator_url": "javascript:alert(4)",
}
EVIDENCE: dict[str, Any] = {
    "result": "partial",
    "duration_ms": 812,
    "attempts": 1,
    "message": "2 canary pod(s) captured",
    "before": {},
    "after": {
        "pods": [
            {
                "name": "checkout-canary-1",
                "phase": "Running",
                "ready": False,
                "restarts": 3,
                "containers": [
                    {
                        "name": "app",
                        "restarts": 3,
                        "last_termination": {"reason": "OOMKilled", "exit_code": 137, "finished_at": "t"},
                        "log_tail": "line 1\n" + HOSTILE,
                        "log_truncated": True,
                        "previous_log_tail": "killed here",
                    }
                ],
                "events": [{"type": "Warning", "reason": "BackOff", "message": HOSTILE, "count": 4, "last_seen": "t"}],
            },
            {"name": "checkout-canary-2", "containers": "not a list", "events": [None, 3]},
            "not a pod",
        ],
        "missing": ["pod checkout-canary-2 container app: log: forbidden"],
        "sha256": "abc123",
        HOSTILE: {"nested": HOSTILE},
    },
}
STEPS: dict[str, Any] = {
    "scale_zero": {
        "result": "done",
        "duration_ms": 4,
        "attempts": 1,
        "before": {"replicas": 2},
        "after": {"replicas": 0},
    },
    "check": {"result": "done", "duration_ms": 1, "attempts": 1, "before": {"images": ["checkout:1.5.0"]}},
    "evidence": EVIDENCE,
    "traffic_off": {
        "result": "done",
        "before": {"annotations": {"nginx.ingress.kubernetes.io/canary": "true"}},
        "after": {"annotations": {"nginx.ingress.kubernetes.io/canary": "false"}},
    },
}


def incident(**changes: Any) -> Incident:
    values: dict[str, Any] = {
        "id": "shop:checkout-canary:1",
        "kind": "rollback",
        "status": "done",
        "created_at": "2026-11-27T20:44:26Z",
        "target": "shop/checkout-canary",
        "namespace": "shop",
        "deployment": "checkout-canary",
        "reason": HOSTILE,
        "steps": STEPS,
        "alerts": [ALERT],
    }
    return Incident(**{**values, **changes})


def render(found: Incident, followups: list[dict[str, Any]] | None = None) -> str:
    deliveries = [{"destination": "slack", "state": "delivered", "attempts": 1, "at": "2026-11-27T20:44:27Z"}]
    return render_incident(found, LINKS, followups=followups or [], deliveries=deliveries, expires=1_800_000_000)


def test_the_timeline_runs_from_the_alerts_to_the_restore() -> None:
    restored = {"kind": "restored", "at": "2026-11-27T21:00:00Z", "delivery": "delivered", "namespace": "shop"}
    entries = timeline(incident(), [{"kind": "resolved", "alertname": "CanaryHighErrorRate"}, restored], [{}])
    assert [e.kind for e in entries] == ["alert", "decision", *["step"] * 4, "notification", "followup", "followup"]
    assert [e.title for e in entries if e.kind == "step"] == ["check", "traffic_off", "evidence", "scale_zero"]
    [scale] = [e for e in entries if e.title == "scale_zero"]
    assert [(c.path, c.before, c.after) for c in scale.changes] == [("replicas", "2", "0")]
    html = render(incident(), [restored])
    order = [html.index(f'data-kind="{kind}"') for kind in ("alert", "decision", "step", "notification", "followup")]
    assert order == sorted(order)


def test_hostile_text_is_escaped_everywhere_and_no_javascript_url_becomes_a_link() -> None:
    html = render(incident())
    assert "<script" not in html and "<img" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5  # label, annotation, reason, log, event, other
    assert "javascript:" not in "".join(re.findall(r'href="([^"]*)"', html))
    assert "&#34;&#39;&amp;" in html


def test_the_evidence_is_shown_whatever_its_shape() -> None:
    view = evidence(incident())
    assert view is not None
    assert view.findings[0] == "1 of 2 pods OOMKilled"  # the report's words (responder.core.evidence)
    assert [p.name for p in view.pods] == ["checkout-canary-1", "checkout-canary-2", "?"]
    assert view.pods[0].ready == "not ready" and view.pods[0].containers[0].termination.startswith("OOMKilled")
    assert ("sha256", "abc123") in view.other
    html = render(incident())
    assert "killed here" in html and "pod checkout-canary-2 container app: log: forbidden" in html
    assert "OOMKilled (exit code 137)" in html and "(truncated)" in html


def test_an_incident_without_evidence_or_steps_still_renders() -> None:
    html = render(incident(steps={}, alerts=[], reason="", metrics=None))
    assert 'id="no-evidence"' in html and "not recorded" in html


def test_a_huge_log_is_cut_to_its_end() -> None:
    steps = dict(STEPS)
    steps["evidence"] = {
        "result": "done",
        "after": {"pods": [{"name": "p", "containers": [{"name": "c", "log_tail": "x" * MAX_LOG_CHARS + "END"}]}]},
    }
    view = evidence(incident(steps=steps))
    assert view is not None
    tail = view.pods[0].containers[0].log_tail
    assert tail.endswith("END") and len(tail) == MAX_LOG_CHARS + 1


@pytest.mark.parametrize("after", [None, "text", 3, [], {"pods": {"a": 1}}, {"pods": [{"containers": [{"x": 1}]}]}])
def test_odd_evidence_records_never_break_the_page(after: Any) -> None:
    steps = {**STEPS, "evidence": {"result": "failed", "after": after, "message": "no evidence"}}
    assert "no evidence" in render(incident(steps=steps))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(json_values, st.text(max_size=40))
def test_any_stored_json_renders_and_nothing_unescaped_gets_through(after: Any, text: str) -> None:
    steps = {**STEPS, "evidence": {"result": "done", "after": after}, "odd": {"result": text, "before": after}}
    html = render(incident(steps=steps, reason=text + "<b>x</b>"))
    assert "<b>x</b>" not in html
