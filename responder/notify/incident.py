"""What people are told about an incident, as plain content: the headline, the verdict, links, commands,
follow-ups and the checklist, from plain data (the stored rollback, the cited alerts, a metrics snapshot, link
settings). Pure: no I/O, no clock, no asyncio; every notifier (:mod:`responder.notify.destinations.slack`,
:mod:`responder.notify.destinations.teams`) and the incident report (:mod:`responder.notify.report`) lay this
out in its own format. Nothing here ever sees a credential: links come from public URLs in the settings and from
the alerts; links to the incident pages are signed by :class:`responder.notify.signing.PageSigner`, which keeps its
key to itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from responder.core.decide import shifted
from responder.notify.numbers import (
    UNAVAILABLE as UNAVAILABLE,
)
from responder.notify.numbers import MetricsSnapshot as MetricsSnapshot
from responder.notify.numbers import TrackMetrics as TrackMetrics
from responder.notify.numbers import fmt_bytes as fmt_bytes
from responder.notify.numbers import fmt_rate as fmt_rate
from responder.notify.numbers import fmt_rps as fmt_rps
from responder.notify.numbers import fmt_seconds as fmt_seconds
from responder.notify.numbers import metric_rows as metric_rows
from responder.notify.signing import LIST_SUBJECT, PageSigner, incident_subject

CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


NOT_RECORDED = "not recorded"


_STEP_ORDER = (
    "check",
    "delegate",
    "flagger",
    "traffic_off",
    "route_off",
    "abort",
    "evidence",
    "scale_zero",
    "annotate",
    "event",
    "resume",
    "restore_check",  # a restore's steps, recorded with the rollback they undid
    "scale_restore",
    "traffic_restore",
    "restore_retry",
)
RESTORE_STEPS = frozenset({"restore_check", "scale_restore", "traffic_restore", "restore_retry"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Links:
    """Where links point; all optional (a link without its base is left out). With ``pages`` (incident_pages
    configured) the incident's link is its signed page, else the API's report."""

    public_url: str | None = None
    dashboard_url: str | None = None  # template: {namespace} {app} {deployment} {from_ms} {to_ms}
    alertmanager_url: str | None = None
    runbook_url: str | None = None
    pages: PageSigner | None = None


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
            "held": f"Rollback HELD: {where}, stable has no ready replica, canary traffic left on",
            "delegated": f"Rollback handed to Flagger: {where}",
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
    aborted = incident.steps.get("abort")
    if incident.status == "done" and isinstance(aborted, Mapping):
        return f"{_aborted_words(aborted.get('before') or {})}; stable untouched"
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
        "delegated": "Flagger rolls the canary back at its next analysis, when its rollback webhook asks the gate;"
        " the responder changed nothing itself",
        "held": "nothing was changed: the stable Deployment cannot take the canary's traffic (a full outage instead"
        " of a partial one); retried while the alerts fire, or act anyway (see the commands)",
        "pending": "in progress",
    }.get(incident.status, incident.status)


def _aborted_words(rollout: Mapping[str, Any]) -> str:
    """What an Argo Rollouts abort stopped: "Rollout checkout aborted at revision 3 (ReplicaSet checkout-6f7d,
    image ..., step 2/4, canary weight 20%): its controller moves traffic and pods back to stable"."""
    facts = [f"ReplicaSet {rollout['canary_replicaset']}"] if rollout.get("canary_replicaset") else []
    facts += [f"image {', '.join(map(str, rollout['images']))}"] if rollout.get("images") else []
    if isinstance(rollout.get("step"), int):
        facts.append(f"step {rollout['step'] + 1}" + (f"/{rollout['steps']}" if rollout.get("steps") else ""))
    if rollout.get("weight") is not None:
        facts.append(f"canary weight {rollout['weight']}%")
    where = f" at revision {rollout['revision']}" if rollout.get("revision") else ""
    detail = f" ({', '.join(facts)})" if facts else ""
    name = rollout.get("rollout") or "the Rollout"
    return f"Argo Rollout {name} aborted{where}{detail}: its controller moves traffic and pods back to stable"


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
    """The incident's link in messages and reports: its signed page when pages are configured, else the API."""
    return page_link(incident_id, links) or api_link(incident_id, links)


def api_link(incident_id: str, links: Links) -> str:
    return _absolute(f"/api/v1/incidents/{quote(incident_id, safe=':')}", links)


def page_link(incident_id: str, links: Links, *, suffix: str = "") -> str | None:
    """The signed page of one incident (``suffix``: ``/report.md``, ``/report.json``), None without pages."""
    if links.pages is None:
        return None
    query = links.pages.query(incident_subject(incident_id))
    return _absolute(f"/incidents/{quote(incident_id, safe=':')}{suffix}?{query}", links)


def list_page_link(links: Links) -> str | None:
    """The signed incident list, None without pages."""
    return _absolute(f"/incidents?{links.pages.query(LIST_SUBJECT)}", links) if links.pages else None


def _absolute(path: str, links: Links) -> str:
    return f"{links.public_url.rstrip('/')}{path}" if links.public_url else path


def runbook_link(incident: Incident, links: Links) -> str | None:
    annotated = next((str(a["annotations"]["runbook_url"]) for a in incident.alerts if _ann(a, "runbook_url")), None)
    return annotated or links.runbook_url


def commands(incident: Incident) -> list[str]:
    """The commands that do what the message suggests, and only those: a bare dry-run replay would answer
    DUPLICATE for an alert already seen (so every replay carries ``--force``); a message about something that
    changed nothing never offers ``restore`` (it would undo an unrelated earlier rollback of the target)."""
    ids = sorted({int(a["notification_id"]) for a in incident.alerts if a.get("notification_id")})[:3]
    check = [f"canary-responder replay --notification-id {n} --force  # dry-run: what it would decide now" for n in ids]
    act = [f"canary-responder replay --notification-id {n} --force --execute" for n in ids]
    if incident.kind == "held":
        return check + [f"{line}  # acts once the rollback cap allows; HELD again until then" for line in act]
    if incident.kind == "paused_hold":
        resume = "canary-responder resume --reason '...'  # first: nothing acts while paused"
        return [resume] + [f"{line}  # then act on it" for line in act] if act else [resume]
    if incident.kind == "error":
        return check
    if incident.kind != "rollback":  # notify-only, refused: nothing to replay or undo
        return []
    return check + _rollback_commands(incident, act)


def _rollback_commands(incident: Incident, act: list[str]) -> list[str]:
    where = f"{incident.namespace} {incident.deployment}" + (
        f" --cluster {incident.cluster}" if incident.cluster else ""
    )
    if not (incident.namespace and incident.deployment) or incident.status in ("refused", "dry_run"):
        return []  # nothing changed: acting again would be refused or dry-run again, and there is nothing to undo
    if incident.status == "held":  # a replay would be held again while stable is down: the override is the way
        return [f"canary-responder rollback {where} --despite-stable  # act although stable is down"]
    return [f"{line}  # act again anyway" for line in act] + [f"canary-responder restore {where}  # undo the rollback"]


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


def unthreaded(incident_id: str, data: Mapping[str, Any], line: str) -> str:
    """A follow-up posted as a message of its own (no thread to reply in): it says which canary it is about."""
    target = data.get("target")
    about = f"{target} (incident {incident_id})" if isinstance(target, str) and target else f"incident {incident_id}"
    return f"Update on {about}: {line}"


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
        return f"Rollback{run} finished: {_FINISHED.get(status, status.replace('_', ' '))}."
    if kind == "retry":
        return f"Retrying the failed rollback (retry {data.get('attempt') or '?'}): {data.get('reason') or ''}".strip()
    if kind == "retry_stopped":
        return "No longer retrying: its alerts resolved. Check the canary by hand (the rollback never completed)."
    if kind == "held" and data.get("incident"):
        return f"Retry held: {data.get('reason') or 'a human must decide'}."
    if kind == "restored" or kind.startswith("restore_"):
        return _restore_text(kind, data)
    if kind == "paused_hold":
        return f"Held while paused: {data.get('alertname') or 'alert'}: {data.get('reason') or 'responder paused'}."
    if kind in ("failed", "action_failed"):
        return f"Action failed: manual action required. {data.get('message', '')}".strip()
    what = data.get("reason") or str(data.get("status") or "").replace("_", " ")
    return f"{kind.replace('_', ' ').capitalize()}: {what}".strip().rstrip(":") + "."


_FINISHED = {
    "done": "canary traffic off and canary scaled to zero",
    "dry_run": "dry run, nothing was changed",
    "refused": "refused by the safety check, nothing was changed",
    "partial": "canary scaled to zero, but some canary traffic still flows: manual action required",
    "held": "held, stable has no ready replica: canary traffic left on",
    "abandoned": "abandoned, it no longer matched the cluster: check the canary by hand",
    "delegated": "handed to Flagger",
    "restored": "undone by a restore",
}


def _restore_text(kind: str, data: Mapping[str, Any]) -> str:
    who = data.get("actor") or data.get("by") or "an admin"
    detail = f" ({data['message']})" if data.get("message") else ""
    if kind == "restored":
        return f"Restored by {who}: the canary is back at its recorded replicas and its traffic is on again{detail}."
    status = kind.removeprefix("restore_").replace("_", " ")
    if status == "failed":
        return (
            f"Restore by {who} failed{detail}: the canary may be partly restored (its traffic stays off); run the"
            " restore again once its pods are ready."
        )
    return f"Restore by {who} {status}{detail}: nothing was changed."


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
    if incident.kind == "rollback" and incident.status in ("done", "partial"):
        items.append("Verify stable version health: ready replicas, error rate and latency now carry all the traffic")
    items += [
        "Find the root cause: the captured evidence (pod status, logs, Events), the dashboard, the diff between the"
        " canary and stable versions; fill in the report's Root cause section",
        "Fix the issue in a new canary version",
        "Add test coverage that would have caught it before the canary",
        "Re-deploy the canary, starting again at a low traffic weight",
        "Write the post-mortem (the team's post-incident log), linking this report",
        f"False positive? Undo with `canary-responder restore {ns} {deployment}` and tune the alert rule or policy",
        "Silence or resolve the remaining alerts",
    ]
    return items


def icon(incident: Incident) -> str:
    if incident.kind == "rollback":
        return {
            "done": "🔴",
            "dry_run": "🧪",
            "failed": "🚨",
            "refused": "⛔",
            "abandoned": "🚨",
            "partial": "🚨",
            "held": "✋",
        }.get(incident.status, "🔴")
    return {"held": "✋", "paused_hold": "⏸", "refused": "⛔", "notify": "🔔", "error": "🚨"}.get(incident.kind, "🔔")


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
