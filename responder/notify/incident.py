"""What people are told about an incident, as plain content: the headline, the verdict, links, commands,
follow-ups and the checklist, from plain data (the stored rollback, the cited alerts, a metrics snapshot, link
settings). Pure: no I/O, no clock, no asyncio; every notifier (:mod:`responder.notify.destinations.slack`,
:mod:`responder.notify.destinations.teams`) and the incident report (:mod:`responder.notify.report`) lay this
out in its own format. Nothing here ever sees a credential: links come from public URLs in the settings and from
the alerts.
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


_STEP_ORDER = ("check", "traffic_off", "route_off", "scale_zero", "annotate", "event", "resume")


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
    cluster: str | None = None  # multi-cluster: which cluster (None with one cluster)
    reason: str = ""
    dry_run: bool = False
    steps: Mapping[str, Any] = field(default_factory=dict)
    alerts: Sequence[Mapping[str, Any]] = ()
    metrics: MetricsSnapshot | None = None
    retrying: bool = False  # a failed rollback that is tried again while its alerts fire


def headline(incident: Incident) -> str:
    where = incident.target or alert_place(incident) or "an unmapped alert"
    if incident.kind == "rollback":
        return {
            "done": f"Canary rolled back: {where}",
            "dry_run": f"Dry run: would roll back {where}",
            "failed": f"Rollback FAILED: {where}, "
            + ("retrying while its alerts fire" if incident.retrying else "manual action required"),
            "refused": f"Rollback refused: {where} is not a canary the responder may touch",
            "abandoned": f"Rollback ABANDONED: {where}, a half-done rollback no longer matched the cluster",
            "partial": f"Rollback PARTIAL: {where}, some canary traffic still flows, manual action required",
            "pending": f"Rolling back {where}",
        }.get(incident.status, f"Rollback {incident.status}: {where}")
    return {
        "held": f"Rollback held: {where} (rollback cap reached), a human must decide",
        "paused_hold": f"Rollback held while paused: {where}",
        "refused": f"Alert refused: {where} is not a target the responder may act on",
        "notify": f"Canary alert: {first_alertname(incident)} on {where}",
        "error": f"Could not process an alert ({first_alertname(incident)}): nothing was decided for it",
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
        "abandoned": "not resumed after a restart or failover (see the resume step for why); check the canary by"
        " hand: its alerts, if they still fire, start a new rollback",
        "partial": "canary scaled to zero and its traffic turned off wherever it could be; some still reaches the"
        " canary (see actions): manual action required",
        "pending": "in progress",
    }.get(incident.status, incident.status)


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
    changed = incident.kind == "rollback" and incident.status not in ("refused", "dry_run")
    if changed and incident.namespace and incident.deployment:  # nothing to undo after a refusal or a notice
        where = f" --cluster {incident.cluster}" if incident.cluster else ""
        lines.append(f"canary-responder restore {incident.namespace} {incident.deployment}{where}  # undo the rollback")
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


def canary_images(incident: Incident) -> list[str]:
    check = incident.steps.get("check", {})
    before = check.get("before") or {}
    return [str(i) for i in before.get("images", [])]


def traffic_weight(incident: Incident) -> str:
    """The canary Ingress weight at decision time, as the check step read it (header/cookie routing noted)."""
    check = (incident.steps.get("check") or {}).get("before") or {}
    nginx = [facts for key, facts in (check.get("traffic") or {}).items() if str(key).startswith("nginx/")]
    annotations = (nginx[0].get("annotations") if nginx else None) or check.get("ingress_annotations") or {}
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


def icon(incident: Incident) -> str:
    if incident.kind == "rollback":
        return {"done": "🔴", "dry_run": "🧪", "failed": "🚨", "refused": "⛔", "abandoned": "🚨", "partial": "🚨"}.get(
            incident.status, "🔴"
        )
    return {"held": "✋", "paused_hold": "⏸", "refused": "⛔", "notify": "🔔", "error": "🚨"}.get(incident.kind, "🔔")


def fmt_rate(value: float | None) -> str:
    return UNAVAILABLE if value is None else f"{value * 100:.2f}%"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return UNAVAILABLE
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def fmt_rps(value: float | None) -> str:
    return UNAVAILABLE if value is None else f"{value:.2f} req/s"


def metric_rows(metrics: MetricsSnapshot) -> list[tuple[str, str, str]]:
    c, s = metrics.canary, metrics.stable
    return [
        ("5xx error rate", fmt_rate(c.error_rate), fmt_rate(s.error_rate)),
        ("P95 latency", fmt_seconds(c.p95_s), fmt_seconds(s.p95_s)),
        ("request rate", fmt_rps(c.request_rate), fmt_rps(s.request_rate)),
    ]


def ordered_steps(steps: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Steps by their place in a rollback (``traffic_off:kind/name`` ids sort with ``traffic_off``)."""
    rank = {name: i for i, name in enumerate(_STEP_ORDER)}
    found = [(n, s) for n, s in steps.items() if isinstance(s, Mapping)]
    return sorted(found, key=lambda p: (rank.get(p[0].split(":", 1)[0], 99), p[0]))


def _quote_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _ann(alert: Mapping[str, Any], key: str) -> bool:
    return bool((alert.get("annotations") or {}).get(key))


def _first_labels(incident: Incident) -> Mapping[str, str]:
    return incident.alerts[0].get("labels", {}) if incident.alerts else {}


def first_alertname(incident: Incident) -> str:
    return str(_first_labels(incident).get("alertname", "alert"))


def alert_place(incident: Incident) -> str | None:
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
