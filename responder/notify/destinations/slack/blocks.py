"""Slack Block Kit layout of the incident content (:mod:`responder.notify.incident`): one message per incident
and thread replies for follow-ups. Pure. Slack refuses section text over 3000 characters and headers over 150."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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

_SECTION_LIMIT = 2900  # Slack refuses section text over 3000 characters


_HEADER_LIMIT = 150  # and header text over 150


@dataclass(frozen=True, slots=True)
class SlackMessage:
    text: str  # the notification / fallback text
    blocks: list[dict[str, Any]]


def incident_message(incident: Incident, links: Links) -> SlackMessage:
    """The one message about an incident."""
    title = headline(incident)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(icon(incident) + " " + title, _HEADER_LIMIT)}},
        _fields(
            [
                f"*Verdict*\n{_esc(verdict(incident))}",
                f"*Where*\n`{_esc(incident.target or alert_place(incident) or 'unmapped')}`",
                f"*When*\n{_esc(incident.created_at)}",
                f"*Reason*\n{_esc(_clip(incident.reason or '-', 1900))}",
            ]
        ),
        _section(_alerts_text(incident, links)),
        _section("*Canary vs stable at decision time*\n" + _metrics_text(incident.metrics)),
    ]
    if incident.steps:
        blocks.append(_section("*Actions*\n" + "\n".join(_step_line(n, s) for n, s in ordered_steps(incident.steps))))
    blocks += _link_blocks(link_list(incident, links))
    cmds = commands(incident)
    if cmds:
        blocks.append(_section("*Replay and undo*\n```" + _esc("\n".join(cmds)) + "```"))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"incident `{_esc(incident.id)}`"}]})
    return SlackMessage(text=title, blocks=blocks)


def followup_message(
    incident_id: str, kind: str, data: Mapping[str, Any], links: Links, *, threaded: bool
) -> SlackMessage:
    """A thread reply (bot token), or a new message that names the incident (incoming webhook: no threads)."""
    line = followup_text(kind, data)
    if not threaded:
        line = unthreaded(incident_id, data, line)
    blocks = [
        _section(_esc(line)),
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"<{_esc_url(audit_link(incident_id, links))}|Audit record>"
                    f" · incident `{_esc(incident_id)}`",
                }
            ],
        },
    ]
    return SlackMessage(text=line, blocks=blocks)


def fallback_message(incident_id: str, kind: str, target: str | None, error: str, links: Links) -> SlackMessage:
    """What is sent when the full message cannot be built (a bug, or data no renderer expected): short, but never
    silent, and it says where to look."""
    line = (
        f"canary-responder: {kind} for {target or 'an alert'} (incident {incident_id}). The full message could not be"
        f" built ({error}); see the audit record."
    )
    context = f"<{_esc_url(audit_link(incident_id, links))}|Audit record> · incident `{_esc(incident_id)}`"
    blocks = [_section(_esc(line)), {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}]
    return SlackMessage(text=line, blocks=blocks)


def _alerts_text(incident: Incident, links: Links) -> str:
    """The alerts, as many as fit whole; the rest counted, with the link to the full record."""
    lines = [_alert_line(a) for a in incident.alerts]
    if not lines:
        return "*Alerts*\n_none recorded_"
    record = f"<{_esc_url(audit_link(incident.id, links))}|incident record>"
    room = _SECTION_LIMIT - len("*Alerts*\n") - len(f"\n… and {len(lines)} more: ") - len(record)
    shown: list[str] = []
    for line in lines:
        if sum(len(x) + 1 for x in shown) + len(line) > room:
            break
        shown.append(line)
    if not shown:  # one alert longer than a section on its own: its line is clipped, never a link
        shown = [_clip(lines[0], room)]
    rest = len(lines) - len(shown)
    tail = f"\n… and {rest} more: {record}" if rest else ""
    return "*Alerts*\n" + "\n".join(shown) + tail


_LINK_RANK = ("Dashboard", "Runbook", "Audit record", "Incident")


def _link_blocks(found: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Links in their own blocks, never cut: the ones on-call needs first, alert sources deduplicated, and a
    link longer than a whole section left out (saying so) rather than clipped into a dead link."""
    ranked = sorted(found, key=lambda p: next((i for i, r in enumerate(_LINK_RANK) if p[0].startswith(r)), 9))
    seen: set[str] = set()
    items: list[str] = []
    too_long: list[str] = []
    for label, url in ranked:
        if url in seen:
            continue
        seen.add(url)
        item = f"<{_esc_url(url)}|{_esc(label)}>"
        if len(item) > _SECTION_LIMIT - len("*Links*\n"):
            too_long.append(label)
        else:
            items.append(item)
    if too_long:
        items.append(_esc(f"({', '.join(too_long)}: link too long for Slack, see the incident record)"))
    blocks: list[dict[str, Any]] = []
    text = "*Links*\n"
    for item in items:
        if len(text) + len(item) + 3 > _SECTION_LIMIT:
            blocks.append(_section(text))
            text = ""
        text += (" · " if text and not text.endswith("\n") else "") + item
    if items:
        blocks.append(_section(text))
    return blocks


def _alert_line(alert: Mapping[str, Any]) -> str:
    labels, annotations = alert.get("labels", {}), alert.get("annotations", {})
    name = labels.get("alertname", "alert")
    tags = ", ".join(f"{k}={labels[k]}" for k in ("severity", "action") if k in labels)
    observed = annotations.get("description") or annotations.get("summary") or "(no description)"
    return _esc(f"• {name} [{tags}] since {alert.get('starts_at', '?')}: {observed}").replace(name, f"*{name}*", 1)


def _metrics_text(metrics: MetricsSnapshot | None) -> str:
    if metrics is None or metrics.unavailable:
        reason = (metrics.unavailable if metrics else None) or "not collected"
        return f"_{UNAVAILABLE}_ ({_esc(reason)})"
    rows = [f"• {name}: canary *{canary}* vs stable {stable}" for name, canary, stable in metric_rows(metrics)]
    return "\n".join(rows) + f"\n_at {_esc(metrics.at)}_"


def _step_line(name: str, step: Mapping[str, Any]) -> str:
    attempts = step.get("attempts") or 1
    text = f"• `{name}`: *{step.get('result', '?')}* in {step.get('duration_ms', '?')} ms ({attempts} attempt(s))"
    if step.get("message"):
        text += f": {step['message']}"
    return _esc(text)


def _fields(texts: list[str]) -> dict[str, Any]:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": _clip(t, 1990)} for t in texts]}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, _SECTION_LIMIT)}}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text: str) -> str:
    """Slack mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _esc_url(url: str) -> str:
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
