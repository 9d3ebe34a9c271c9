"""What people read about an incident: Slack Block Kit messages and the incident report (JSON and Markdown).

Pure functions of plain data (the stored rollback, the cited alert events, a metrics snapshot, link settings):
no I/O, no clock, no asyncio, so every message can be checked in unit tests. The delivery worker
(:mod:`responder.outbox`) and the incident endpoints (:mod:`responder.incidents`) collect the data and call these.

Nothing here ever sees a credential: links are built from public URLs in the settings and from the alerts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from responder.core.decide import shifted

CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
NOT_RECORDED = "not recorded"
UNAVAILABLE = "unavailable"
_STEP_ORDER = ("check", "traffic_off", "route_off", "scale_zero", "annotate", "event")
_SECTION_LIMIT = 2900  # Slack refuses section text over 3000 characters
_HEADER_LIMIT = 150  # and header text over 150


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackMetrics:
    """One track's numbers at decision time; ``None`` where Prometheus had no value (NaN, no series)."""

    error_rate: float | None = None  # 5xx ratio, 0..1
    p95_s: float | None = None
    request_rate: float | None = None  # requests per second


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSnapshot:
    """Canary vs stable at one instant, or why there are no numbers (``unavailable``)."""

    at: str
    canary: TrackMetrics = field(default_factory=TrackMetrics)
    stable: TrackMetrics = field(default_factory=TrackMetrics)
    unavailable: str | None = None

    def as_dict(self) -> dict[str, Any]:
        def track(t: TrackMetrics) -> dict[str, float | None]:
            return {"error_rate": t.error_rate, "p95_seconds": t.p95_s, "request_rate": t.request_rate}

        if self.unavailable:
            return {"at": self.at, "unavailable": self.unavailable}
        return {"at": self.at, "canary": track(self.canary), "stable": track(self.stable)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricsSnapshot:
        def track(t: Mapping[str, Any]) -> TrackMetrics:
            return TrackMetrics(
                error_rate=t.get("error_rate"), p95_s=t.get("p95_seconds"), request_rate=t.get("request_rate")
            )

        if data.get("unavailable"):
            return cls(at=str(data.get("at", "")), unavailable=str(data["unavailable"]))
        return cls(at=str(data["at"]), canary=track(data.get("canary", {})), stable=track(data.get("stable", {})))


@dataclass(frozen=True, slots=True, kw_only=True)
class Links:
    """Where links point; all optional (a link without its base is left out)."""

    public_url: str | None = None
    dashboard_url: str | None = None  # template: {namespace} {app} {deployment} {from_ms} {to_ms}
    alertmanager_url: str | None = None
    runbook_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    """Everything known about one incident. ``alerts`` are stored events as plain mappings (event_id,
    notification_id, fingerprint, status, starts_at, labels, annotations, generator_url); ``steps`` is the
    rollbacks table's record of each step."""

    id: str
    kind: str  # rollback, held, refused, notify, paused_hold
    status: str  # rollback: pending, done, failed, refused, dry_run; otherwise the kind
    created_at: str
    target: str | None = None
    namespace: str | None = None
    deployment: str | None = None
    reason: str = ""
    dry_run: bool = False
    steps: Mapping[str, Any] = field(default_factory=dict)
    alerts: Sequence[Mapping[str, Any]] = ()
    metrics: MetricsSnapshot | None = None
    retrying: bool = False  # a failed rollback that is tried again while its alerts fire


@dataclass(frozen=True, slots=True)
class SlackMessage:
    text: str  # the notification / fallback text
    blocks: list[dict[str, Any]]


# -- headline --


def headline(incident: Incident) -> str:
    where = incident.target or _alert_place(incident) or "an unmapped alert"
    if incident.kind == "rollback":
        return {
            "done": f"Canary rolled back: {where}",
            "dry_run": f"Dry run: would roll back {where}",
            "failed": f"Rollback FAILED: {where}, "
            + ("retrying while its alerts fire" if incident.retrying else "manual action required"),
            "refused": f"Rollback refused: {where} is not a canary the responder may touch",
            "pending": f"Rolling back {where}",
        }.get(incident.status, f"Rollback {incident.status}: {where}")
    return {
        "held": f"Rollback held: {where} (rollback cap reached), a human must decide",
        "paused_hold": f"Rollback held while paused: {where}",
        "refused": f"Alert refused: {where} is not a target the responder may act on",
        "notify": f"Canary alert: {_first_alertname(incident)} on {where}",
        "error": f"Could not process an alert ({_first_alertname(incident)}): nothing was decided for it",
    }.get(incident.kind, f"{incident.kind}: {where}")


def verdict(incident: Incident) -> str:
    if incident.kind != "rollback":
        return {
            "held": "nothing was changed: the global rollback cap is reached",
            "paused_hold": "nothing was changed: the responder is paused",
            "refused": "nothing was changed",
            "notify": "notify-only alert: nothing was changed",
            "error": "quarantined: the alert was recorded but could not be decided; check it by hand",
        }.get(incident.kind, "nothing was changed")
    return {
        "done": "canary traffic off and canary scaled to zero; stable untouched",
        "dry_run": "dry run: the plan was checked, nothing was changed",
        "failed": "a step failed (see actions); "
        + (
            "retried while its alerts fire, manual action may be required"
            if incident.retrying
            else "manual action required"
        ),
        "refused": "refused by the safety check: nothing was changed",
        "pending": "in progress",
    }.get(incident.status, incident.status)


# -- links and commands --


def time_range_ms(incident: Incident, *, before: timedelta = timedelta(minutes=30)) -> tuple[int, int]:
    """A window around the incident: from before the first alert started to a while after the decision."""
    decided = _parse(incident.created_at) or datetime.now().astimezone()
    starts = [found for a in incident.alerts if (found := _parse(str(a.get("starts_at") or "")))]
    # An alert that started long before (or a stamp at the ends of the calendar) must not stretch the window
    # without bound: the dashboard shows at most a day before the decision.
    start = max(min([decided, *starts]), shifted(decided, -timedelta(days=1)))
    return _epoch_ms(shifted(start, -before)), _epoch_ms(shifted(decided, timedelta(minutes=15)))


def dashboard_link(incident: Incident, links: Links) -> str | None:
    from_ms, to_ms = time_range_ms(incident)
    labels = _first_labels(incident)
    if links.dashboard_url:
        values = {
            "namespace": incident.namespace or labels.get("namespace", ""),
            "app": labels.get("app") or _app_of(incident.deployment),
            "deployment": incident.deployment or "",
            "from_ms": str(from_ms),
            "to_ms": str(to_ms),
        }
        return links.dashboard_url.format_map({k: quote(v, safe="") for k, v in values.items()})
    annotated = next(
        (str(a["annotations"]["dashboard_url"]) for a in incident.alerts if _ann(a, "dashboard_url")), None
    )
    if annotated is None:
        return None
    return f"{annotated}{'&' if '?' in annotated else '?'}from={from_ms}&to={to_ms}"


def silence_link(labels: Mapping[str, str], links: Links) -> str | None:
    """Alertmanager's "new silence" form pre-filled with the alert's exact label set."""
    if not links.alertmanager_url or not labels:
        return None
    matchers = ", ".join(f'{name}="{_quote_label(value)}"' for name, value in sorted(labels.items()))
    return f"{links.alertmanager_url.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"


def audit_link(incident_id: str, links: Links) -> str:
    path = f"/api/v1/incidents/{quote(incident_id, safe=':')}"
    return f"{links.public_url.rstrip('/')}{path}" if links.public_url else path


def runbook_link(incident: Incident, links: Links) -> str | None:
    annotated = next((str(a["annotations"]["runbook_url"]) for a in incident.alerts if _ann(a, "runbook_url")), None)
    return annotated or links.runbook_url


def commands(incident: Incident) -> list[str]:
    """The exact commands to replay the notification that caused it (dry-run first) and to undo it."""
    lines = []
    notification_ids = sorted({int(a["notification_id"]) for a in incident.alerts if a.get("notification_id")})
    for nid in notification_ids[:3]:
        lines.append(f"canary-responder replay --notification-id {nid}            # dry-run: decisions and plan")
        lines.append(f"canary-responder replay --notification-id {nid} --execute --force  # act again anyway")
    if incident.namespace and incident.deployment:
        lines.append(f"canary-responder restore {incident.namespace} {incident.deployment}  # undo the rollback")
    return lines


def link_list(incident: Incident, links: Links) -> list[tuple[str, str]]:
    """(label, url) of every link that can be built, in the order people need them."""
    found: list[tuple[str, str | None]] = [("Dashboard", dashboard_link(incident, links))]
    for alert in incident.alerts[:5]:
        name = str(alert.get("labels", {}).get("alertname", "alert"))
        found.append((f"Alert source ({name})", str(alert.get("generator_url") or "") or None))
        found.append((f"Silence {name}", silence_link(alert.get("labels", {}), links)))
    found.append(("Runbook", runbook_link(incident, links)))
    found.append(("Audit record", audit_link(incident.id, links)))
    return [(label, url) for label, url in found if url]


# -- Slack messages --


def incident_message(incident: Incident, links: Links) -> SlackMessage:
    """The one message about an incident."""
    title = headline(incident)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(_icon(incident) + " " + title, _HEADER_LIMIT)}},
        _fields(
            [
                f"*Verdict*\n{_esc(verdict(incident))}",
                f"*Where*\n`{_esc(incident.target or _alert_place(incident) or 'unmapped')}`",
                f"*When*\n{_esc(incident.created_at)}",
                f"*Reason*\n{_esc(_clip(incident.reason or '-', 1900))}",
            ]
        ),
        _section("*Alerts*\n" + ("\n".join(_alert_line(a) for a in incident.alerts) or "_none recorded_")),
        _section("*Canary vs stable at decision time*\n" + _metrics_text(incident.metrics)),
    ]
    if incident.steps:
        blocks.append(_section("*Actions*\n" + "\n".join(_step_line(n, s) for n, s in _ordered_steps(incident.steps))))
    found = link_list(incident, links)
    if found:
        blocks.append(_section("*Links*\n" + " · ".join(f"<{_esc_url(url)}|{_esc(label)}>" for label, url in found)))
    cmds = commands(incident)
    if cmds:
        blocks.append(_section("*Replay and undo*\n```" + _esc("\n".join(cmds)) + "```"))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"incident `{_esc(incident.id)}`"}]})
    return SlackMessage(text=title, blocks=blocks)


def followup_text(kind: str, data: Mapping[str, Any]) -> str:
    """One line for a later event of an incident: resolved, failed, restored, held while paused."""
    if kind == "resolved":
        return f"Resolved: {data.get('alertname') or 'alert'} ({data.get('fingerprint', '')}) is no longer firing."
    if kind == "rollback":
        status = str(data.get("status", ""))
        attempt = int(data.get("attempt") or 0)
        run = f" (retry {attempt})" if attempt else ""
        if status == "failed" and data.get("retrying"):
            return f"Rollback{run} failed: the canary is still live; retrying while its alerts fire."
        if status == "failed":
            return f"Rollback{run} failed: manual action required."
        return f"Rollback{run} finished: {status}."
    if kind == "retry":
        return f"Retrying the failed rollback (retry {data.get('attempt') or '?'}): {data.get('reason') or ''}".strip()
    if kind == "retry_stopped":
        return "No longer retrying: its alerts resolved. Check the canary by hand (the rollback never completed)."
    if kind == "held" and data.get("incident"):
        return f"Retry held: {data.get('reason') or 'a human must decide'}."
    if kind == "restored":
        who = data.get("actor") or data.get("by") or "an admin"
        detail = data.get("message") or data.get("status") or ""
        return f"Restored by {who}: the recorded pre-rollback state is back. {detail}".strip()
    if kind == "paused_hold":
        return f"Held while paused: {data.get('alertname') or 'alert'}: {data.get('reason') or 'responder paused'}."
    if kind in ("failed", "action_failed"):
        return f"Action failed: manual action required. {data.get('message', '')}".strip()
    return f"{kind}: {data.get('reason') or data.get('status') or ''}".strip()


def followup_message(
    incident_id: str, kind: str, data: Mapping[str, Any], links: Links, *, threaded: bool
) -> SlackMessage:
    """A thread reply (bot token), or a new message that names the incident (incoming webhook: no threads)."""
    line = followup_text(kind, data)
    if not threaded:
        line = f"Update on incident {incident_id}: {line}"
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


# -- incident report --


def report(incident: Incident, links: Links, followups: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The post-rollback report as JSON."""
    return {
        "id": incident.id,
        "kind": incident.kind,
        "status": incident.status,
        "headline": headline(incident),
        "verdict": verdict(incident),
        "date": incident.created_at,
        "target": incident.target,
        "namespace": incident.namespace,
        "deployment": incident.deployment,
        "dry_run": incident.dry_run,
        "canary_images": canary_images(incident) or NOT_RECORDED,
        "traffic_weight": traffic_weight(incident),
        "reason": incident.reason,
        "alerts": [_alert_report(a) for a in incident.alerts],
        "metrics": incident.metrics.as_dict() if incident.metrics else {"unavailable": "not collected"},
        "actions": [{"step": name, **_step_report(step)} for name, step in _ordered_steps(incident.steps)],
        "links": {label: url for label, url in link_list(incident, links)},
        "commands": commands(incident),
        "followups": [dict(f) for f in followups],
        "checklist": checklist(incident),
    }


def canary_images(incident: Incident) -> list[str]:
    check = incident.steps.get("check", {})
    before = check.get("before") or {}
    return [str(i) for i in before.get("images", [])]


def traffic_weight(incident: Incident) -> str:
    """The canary Ingress weight at decision time, as the check step read it (header/cookie routing noted)."""
    check = (incident.steps.get("check") or {}).get("before") or {}
    annotations = check.get("ingress_annotations") or {}
    weight = annotations.get(CANARY_WEIGHT)
    extra = [k.rsplit("-by-", 1)[1] for k in annotations if "-by-" in k and not k.endswith(("-value", "-pattern"))]
    if weight in (None, ""):
        return f"by {', '.join(extra)} only" if extra else NOT_RECORDED
    return f"{weight}%" + (f" (plus by {', '.join(extra)})" if extra else "")


def checklist(incident: Incident) -> list[str]:
    ns, deployment = incident.namespace or "NAMESPACE", incident.deployment or "DEPLOYMENT"
    items = []
    if incident.kind == "rollback" and incident.status == "done":
        items.append(f"Confirm canary traffic is off and {ns}/{deployment} has 0 replicas")
    if incident.status in ("failed", "held", "paused_hold") or incident.kind in ("held", "paused_hold"):
        items.append(f"Manual action required: decide whether to roll back {ns}/{deployment} by hand")
    items += [
        "Find the root cause: dashboard, canary logs, the diff between the canary and stable versions",
        "Fix it, build a new canary version and start it again at a low traffic weight",
        f"False positive? Undo with `canary-responder restore {ns} {deployment}` and tune the alert rule or policy",
        "Silence or resolve the remaining alerts; record the incident in the team's post-incident log",
    ]
    return items


def report_markdown(incident: Incident, links: Links, followups: Sequence[Mapping[str, Any]] = ()) -> str:
    """The same report following the post-rollback template, as Markdown."""
    data = report(incident, links, followups)
    images = data["canary_images"]
    lines = [
        f"# {data['headline']}",
        "",
        f"- **Incident:** `{incident.id}`",
        f"- **Date:** {incident.created_at}",
        f"- **Target:** {incident.target or '-'}",
        f"- **Verdict:** {data['verdict']}",
        f"- **Canary version / image:** {', '.join(f'`{i}`' for i in images) if isinstance(images, list) else images}",
        f"- **Traffic weight at the time:** {data['traffic_weight']}",
        f"- **Dry run:** {'yes' if incident.dry_run else 'no'}",
        "",
        "## Reason",
        "",
        incident.reason or "-",
        "",
        *[f"- {_alert_markdown(a)}" for a in incident.alerts],
        "",
        "## Metrics at rollback",
        "",
        *_metrics_markdown(incident.metrics),
        "",
        "## Actions taken",
        "",
        *_actions_markdown(incident.steps),
        "",
        "## Links",
        "",
        *[f"- [{label}]({url})" for label, url in data["links"].items()],
        "",
        "## Replay and undo",
        "",
        "```sh",
        *data["commands"],
        "```",
        "",
    ]
    if followups:
        lines += [
            "## Since then",
            "",
            *[f"- {f.get('at', '')} {followup_text(str(f['kind']), f)}" for f in followups],
            "",
        ]
    lines += ["## Follow-up checklist", "", *[f"- [ ] {item}" for item in data["checklist"]], ""]
    return "\n".join(lines)


# -- helpers --


def _icon(incident: Incident) -> str:
    if incident.kind == "rollback":
        return {"done": "🔴", "dry_run": "🧪", "failed": "🚨", "refused": "⛔"}.get(incident.status, "🔴")
    return {"held": "✋", "paused_hold": "⏸", "refused": "⛔", "notify": "🔔", "error": "🚨"}.get(incident.kind, "🔔")


def _alert_line(alert: Mapping[str, Any]) -> str:
    labels, annotations = alert.get("labels", {}), alert.get("annotations", {})
    name = labels.get("alertname", "alert")
    tags = ", ".join(f"{k}={labels[k]}" for k in ("severity", "action") if k in labels)
    observed = annotations.get("description") or annotations.get("summary") or "(no description)"
    return _esc(f"• {name} [{tags}] since {alert.get('starts_at', '?')}: {observed}").replace(name, f"*{name}*", 1)


def _alert_report(alert: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("event_id", "notification_id", "fingerprint", "status", "starts_at", "labels", "annotations")
    return {**{k: alert.get(k) for k in keys}, "generator_url": alert.get("generator_url")}


def _alert_markdown(alert: Mapping[str, Any]) -> str:
    labels, annotations = alert.get("labels", {}), alert.get("annotations", {})
    observed = annotations.get("description") or annotations.get("summary") or "(no description)"
    return f"**{labels.get('alertname', 'alert')}** (since {alert.get('starts_at', '?')}): {observed}"


def _fmt_rate(value: float | None) -> str:
    return UNAVAILABLE if value is None else f"{value * 100:.2f}%"


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return UNAVAILABLE
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _fmt_rps(value: float | None) -> str:
    return UNAVAILABLE if value is None else f"{value:.2f} req/s"


def _metric_rows(metrics: MetricsSnapshot) -> list[tuple[str, str, str]]:
    c, s = metrics.canary, metrics.stable
    return [
        ("5xx error rate", _fmt_rate(c.error_rate), _fmt_rate(s.error_rate)),
        ("P95 latency", _fmt_seconds(c.p95_s), _fmt_seconds(s.p95_s)),
        ("request rate", _fmt_rps(c.request_rate), _fmt_rps(s.request_rate)),
    ]


def _metrics_text(metrics: MetricsSnapshot | None) -> str:
    if metrics is None or metrics.unavailable:
        reason = (metrics.unavailable if metrics else None) or "not collected"
        return f"_{UNAVAILABLE}_ ({_esc(reason)})"
    rows = [f"• {name}: canary *{canary}* vs stable {stable}" for name, canary, stable in _metric_rows(metrics)]
    return "\n".join(rows) + f"\n_at {_esc(metrics.at)}_"


def _metrics_markdown(metrics: MetricsSnapshot | None) -> list[str]:
    if metrics is None or metrics.unavailable:
        return [f"{UNAVAILABLE} ({metrics.unavailable if metrics else 'not collected'})"]
    rows = [f"| {n} | {c} | {s} |" for n, c, s in _metric_rows(metrics)]
    return [f"At {metrics.at}:", "", "| metric | canary | stable |", "|---|---|---|", *rows]


def _ordered_steps(steps: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    rank = {name: i for i, name in enumerate(_STEP_ORDER)}
    return sorted(((n, s) for n, s in steps.items() if isinstance(s, Mapping)), key=lambda p: rank.get(p[0], 99))


def _step_report(step: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("result", "duration_ms", "attempts", "reason", "message", "before", "after")
    return {k: step.get(k) for k in keys}


def _step_line(name: str, step: Mapping[str, Any]) -> str:
    attempts = step.get("attempts") or 1
    text = f"• `{name}`: *{step.get('result', '?')}* in {step.get('duration_ms', '?')} ms ({attempts} attempt(s))"
    if step.get("message"):
        text += f": {step['message']}"
    return _esc(text)


def _actions_markdown(steps: Mapping[str, Any]) -> list[str]:
    if not steps:
        return ["none"]
    rows = ["| step | result | duration | attempts | details |", "|---|---|---|---|---|"]
    for name, step in _ordered_steps(steps):
        detail = str(step.get("message") or step.get("reason") or "").replace("|", "\\|")
        rows.append(
            f"| {name} | {step.get('result')} | {step.get('duration_ms')} ms | {step.get('attempts')} | {detail} |"
        )
    return rows


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


def _quote_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _ann(alert: Mapping[str, Any], key: str) -> bool:
    return bool((alert.get("annotations") or {}).get(key))


def _first_labels(incident: Incident) -> Mapping[str, str]:
    return incident.alerts[0].get("labels", {}) if incident.alerts else {}


def _first_alertname(incident: Incident) -> str:
    return str(_first_labels(incident).get("alertname", "alert"))


def _alert_place(incident: Incident) -> str | None:
    labels = _first_labels(incident)
    if "namespace" in labels or "app" in labels:
        return f"{labels.get('namespace', '?')}/{labels.get('app', '?')}"
    return None


def _app_of(deployment: str | None) -> str:
    if not deployment:
        return ""
    return deployment.removesuffix("-canary")


def _parse(text: str) -> datetime | None:
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo is not None else None


def _epoch_ms(moment: datetime) -> int:
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        return 0


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
