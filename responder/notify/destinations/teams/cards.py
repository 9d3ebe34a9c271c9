"""Microsoft Teams layout of the incident content (:mod:`responder.notify.incident`): one Adaptive Card per incident
and one per follow-up, which names the incident (a Teams webhook cannot reply in a thread). Pure.

The cards declare Adaptive Card schema **1.2**, the lowest version that has every element they use
(``RichTextBlock``/``TextRun``, ``ActionSet``, the ``good``/``attention``/``warning`` container styles, ``bleed``):
Teams renders cards up to 1.5, and a client below a card's declared version shows only its ``fallbackText``, so
declaring more than is used would only cost readers. Nothing from 1.3 on is needed (no inputs, no
``Action.Execute``, no ``Table``: the metrics are a ``ColumnSet``).

Hostile text. Alert labels and annotations, and everything built from them (the target, the reason, step messages,
follow-up lines), reach a card only as ``TextRun`` text, which the schema renders without Markdown, or as a button
title; ``TextBlock`` (Markdown in Teams) carries only our own words. A link becomes an ``Action.OpenUrl`` button only
when it is an absolute http(s) URL (a ``javascript:`` runbook annotation stays text), and a link is never shortened:
a card over Teams' 28 KB message limit first loses detail (fewer alerts, shorter descriptions); failing that,
:func:`incident_card` raises :class:`CardTooLarge` and the outbox sends :func:`fallback_card` instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from responder.notify.incident import (
    UNAVAILABLE,
    Incident,
    Links,
    MetricsSnapshot,
    alert_place,
    audit_link,
    commands,
    followup_text,
    headline,
    icon,
    link_list,
    metric_rows,
    ordered_steps,
    unthreaded,
    verdict,
)

CARD_VERSION = "1.2"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"  # an identifier, as in Microsoft's examples
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_PAYLOAD_BYTES = 24_000  # Teams refuses messages over 28 KB; the rest is room for what Workflows wraps around it
# Buttons per ActionSet: a row that fits a phone's width, well below any host's action limit (Teams moves actions
# past its limit into an overflow menu; other hosts drop them).
_BUTTONS_PER_ROW = 3
_URL_SAFE = "!#$%&'()*+,-./:;=?@[]_~"  # RFC 3986 reserved and unreserved characters, and existing escapes


class CardTooLarge(ValueError):
    """Even the compact card is over Teams' message limit (links are never cut to make it fit)."""


@dataclass(frozen=True, slots=True)
class TeamsMessage:
    text: str  # the headline or the line: previews and logs
    payload: dict[str, Any]  # the POST body: a message with the card as its one attachment

    @property
    def card(self) -> dict[str, Any]:
        content: dict[str, Any] = self.payload["attachments"][0]["content"]
        return content


@dataclass(frozen=True, slots=True)
class _Detail:
    alerts: int  # alerts listed
    observed: int  # characters of each alert's description
    reason: int
    message: int  # characters of a step's message


_DETAILS = (
    _Detail(alerts=10, observed=600, reason=1500, message=300),
    _Detail(alerts=3, observed=160, reason=300, message=100),
)


def encode(payload: Mapping[str, Any]) -> bytes:
    """The request body, as it is measured against Teams' limit (UTF-8, not \\u-escaped)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def incident_card(incident: Incident, links: Links) -> TeamsMessage:
    """The one card about an incident; raise CardTooLarge when even the compact one is over Teams' limit."""
    size = 0
    for detail in _DETAILS:
        message = _incident_card(incident, links, detail)
        size = len(encode(message.payload))
        if size <= MAX_PAYLOAD_BYTES:
            return message
    raise CardTooLarge(f"the card is {size} bytes even compacted (Teams refuses messages over 28 KB)")


def followup_card(
    incident_id: str, kind: str, data: Mapping[str, Any], links: Links, *, threaded: bool
) -> TeamsMessage:
    """A later event of an incident: a card of its own that names the incident (``threaded`` is always False for
    a Teams webhook; a reply in a thread would not repeat the incident)."""
    line = followup_text(kind, data)
    if not threaded:
        line = unthreaded(incident_id, data, line)
    line = _clip(line, 2000)
    failed = kind in ("failed", "action_failed", "retry_stopped") or data.get("status") == "failed"
    style = "attention" if failed else {"resolved": "good", "restored": "good"}.get(kind, "emphasis")
    body = [
        _band(style, _run(line, weight="bolder")),
        *_link_items([("Audit record", audit_link(incident_id, links))]),
        _footer(incident_id),
    ]
    return TeamsMessage(text=line, payload=_envelope(body, f"canary-responder: update on incident ({kind})"))


def fallback_card(incident_id: str, kind: str, target: str | None, error: str, links: Links) -> TeamsMessage:
    """What is sent when the full card cannot be built (a bug, data no layout expected, a card over Teams' limit):
    short, but never silent, and it says where to look."""
    line = _clip(
        f"canary-responder: {kind} for {target or 'an alert'} (incident {incident_id}). The full message could not be"
        f" built ({error}); see the audit record.",
        2000,
    )
    body = [
        _band("warning", _run(line)),
        *_link_items([("Audit record", audit_link(incident_id, links))]),
        _footer(incident_id),
    ]
    return TeamsMessage(text=line, payload=_envelope(body, f"canary-responder: {kind} notice"))


def _incident_card(incident: Incident, links: Links, detail: _Detail) -> TeamsMessage:
    title = headline(incident)
    body: list[dict[str, Any]] = [
        _band(_style(incident), _run(_clip(f"{icon(incident)} {title}", 300), size="large", weight="bolder")),
        _fact("Verdict", _run(verdict(incident))),
        _fact("Where", _run(incident.target or alert_place(incident) or "unmapped", fontType="monospace")),
        _fact("When", _run(incident.created_at)),
        _fact("Reason", _run(_clip(incident.reason or "-", detail.reason))),
        *_alerts(incident.alerts, detail),
        *_metrics(incident.metrics),
        *_steps(incident.steps, detail),
        *_links(incident, links),
        *_commands(incident),
        _footer(incident.id),
    ]
    return TeamsMessage(text=title, payload=_envelope(body, f"canary-responder: {incident.kind} notice"))


def _alerts(alerts: Sequence[Mapping[str, Any]], detail: _Detail) -> list[dict[str, Any]]:
    items = [_heading("Alerts")]
    for alert in alerts[: detail.alerts]:
        labels, annotations = alert.get("labels") or {}, alert.get("annotations") or {}
        tags = ", ".join(f"{k}={labels[k]}" for k in ("severity", "action") if k in labels)
        observed = annotations.get("description") or annotations.get("summary") or "(no description)"
        rest = f" [{tags}] since {alert.get('starts_at', '?')}: {_clip(str(observed), detail.observed)}"
        items.append(_rich(_run("• "), _run(str(labels.get("alertname", "alert")), weight="bolder"), _run(rest)))
    more = len(alerts) - detail.alerts
    if more > 0:
        items.append(_rich(_run(f"… and {more} more alert(s): see the audit record", isSubtle=True)))
    if not alerts:
        items.append(_rich(_run("none recorded", italic=True)))
    return items


def _metrics(metrics: MetricsSnapshot | None) -> list[dict[str, Any]]:
    items = [_heading("Canary vs stable at decision time")]
    if metrics is None or metrics.unavailable:
        reason = (metrics.unavailable if metrics else None) or "not collected"
        return [*items, _rich(_run(UNAVAILABLE, italic=True), _run(f" ({_clip(reason, 300)})"))]
    rows = metric_rows(metrics)
    columns = [
        _column("stretch", ["metric", *(name for name, _, _ in rows)]),
        _column("auto", ["canary", *(canary for _, canary, _ in rows)], bolder=True),
        _column("auto", ["stable", *(stable for _, _, stable in rows)]),
    ]
    return [*items, {"type": "ColumnSet", "columns": columns}, _rich(_run(f"at {metrics.at}", isSubtle=True))]


def _steps(steps: Mapping[str, Any], detail: _Detail) -> list[dict[str, Any]]:
    if not steps:
        return []
    items = [_heading("Actions")]
    for name, step in ordered_steps(steps):
        attempts = step.get("attempts") or 1
        tail = f" in {step.get('duration_ms', '?')} ms ({attempts} attempt(s))"
        if step.get("message"):
            tail += f": {_clip(str(step['message']), detail.message)}"
        result = str(step.get("result", "?"))
        items.append(_rich(_run(name, fontType="monospace"), _run(": "), _run(result, weight="bolder"), _run(tail)))
    return items


def _links(incident: Incident, links: Links) -> list[dict[str, Any]]:
    found = link_list(incident, links)
    return [_heading("Links"), *_link_items(found)] if found else []


def _link_items(found: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Buttons for http(s) links, in rows; anything else (a relative audit path without ``public_url``, another
    scheme) as text. Every link whole."""
    buttons = [(label, url) for label, url in found if _openable(url)]
    rows = [buttons[i : i + _BUTTONS_PER_ROW] for i in range(0, len(buttons), _BUTTONS_PER_ROW)]
    items: list[dict[str, Any]] = [
        {"type": "ActionSet", "actions": [_open_url(label, url) for label, url in row]} for row in rows
    ]
    items += [_rich(_run(f"{label}: ", weight="bolder"), _run(url)) for label, url in found if not _openable(url)]
    return items


def _commands(incident: Incident) -> list[dict[str, Any]]:
    cmds = commands(incident)
    if not cmds:
        return []
    return [_heading("Replay and undo"), *(_rich(_run(cmd, fontType="monospace")) for cmd in cmds)]


def _style(incident: Incident) -> str:
    if incident.kind == "rollback":
        return {"done": "attention", "failed": "attention", "dry_run": "emphasis"}.get(incident.status, "warning")
    return {"error": "attention", "notify": "emphasis"}.get(incident.kind, "warning")


def _envelope(body: list[dict[str, Any]], fallback_text: str) -> dict[str, Any]:
    card = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "fallbackText": fallback_text,  # Markdown to the few clients that show it: only our own words
        "msteams": {"width": "Full"},  # Teams' extension: the card spans the channel's width
        "body": body,
    }
    return {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card}]}


def _band(style: str, run: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Container", "style": style, "bleed": True, "items": [_rich(run)]}


def _fact(label: str, value: dict[str, Any]) -> dict[str, Any]:
    """A label and a value side by side; not a FactSet, whose values Teams reads as Markdown."""
    return {
        "type": "ColumnSet",
        "spacing": "small",
        "columns": [
            {"type": "Column", "width": "80px", "items": [{"type": "TextBlock", "text": label, "weight": "bolder"}]},
            {"type": "Column", "width": "stretch", "items": [_rich(value)]},
        ],
    }


def _column(width: str, cells: list[str], *, bolder: bool = False) -> dict[str, Any]:
    """One column of the metrics: a header and our own formatted numbers (no text from alerts)."""
    head, *rest = cells
    items = [{"type": "TextBlock", "text": head, "weight": "bolder", "isSubtle": True}]
    items += [{"type": "TextBlock", "text": cell, **({"weight": "bolder"} if bolder else {})} for cell in rest]
    return {"type": "Column", "width": width, "items": items}


def _heading(text: str) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "weight": "bolder", "wrap": True, "separator": True, "spacing": "medium"}


def _footer(incident_id: str) -> dict[str, Any]:
    return {**_rich(_run(f"incident {incident_id}", isSubtle=True, size="small")), "separator": True}


def _rich(*runs: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(runs)}


def _run(text: str, **style: Any) -> dict[str, Any]:
    """Text as it is: a TextRun is never read as Markdown."""
    return {"type": "TextRun", "text": text, **style}


def _open_url(label: str, url: str) -> dict[str, Any]:
    return {"type": "Action.OpenUrl", "title": _clip(label, 80), "url": quote(url, safe=_URL_SAFE)}


def _openable(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
