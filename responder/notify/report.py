"""The post-rollback report of an incident, as JSON and as Markdown (the canary guide's template): pure functions
of the incident's content (:mod:`responder.notify.incident`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from responder.notify.incident import (
    NOT_RECORDED,
    UNAVAILABLE,
    Incident,
    Links,
    MetricsSnapshot,
    canary_images,
    checklist,
    commands,
    followup_text,
    headline,
    link_list,
    metric_rows,
    traffic_weight,
    verdict,
)
from responder.notify.sections import (
    ROOT_CAUSE_PLACEHOLDER,
    cell,
    details,
    evidence_markdown,
    root_cause,
    split_steps,
    stable_health,
)


def report(incident: Incident, links: Links, followups: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The post-rollback report as JSON."""
    done, undone = split_steps(incident.steps)
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
        "stable": stable_health(incident),
        "root_cause": root_cause(incident),
        "actions": [{"step": name, **_step_report(name, step)} for name, step in done],
        "undone": [{"step": name, **_step_report(name, step)} for name, step in undone],
        "links": {label: url for label, url in link_list(incident, links)},
        "commands": commands(incident),
        "followups": [dict(f) for f in followups],
        "checklist": checklist(incident),
    }


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
        "## Stable version health",
        "",
        *_stable_markdown(data["stable"]),
        "",
        "## Root cause",
        "",
        f"_{ROOT_CAUSE_PLACEHOLDER}_",
        "",
        "What the evidence captured before the scale-down shows:",
        "",
        *[f"- {cell(line)}" for line in data["root_cause"]["evidence_shows"]],
        "",
        "## Actions taken",
        "",
        *_actions_markdown(data["actions"]),
        "",
        *(["## Undone by the restore", "", *_actions_markdown(data["undone"]), ""] if data["undone"] else []),
        "## Evidence (the canary pods before the scale-down)",
        "",
        *evidence_markdown(incident),
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


def _alert_report(alert: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("event_id", "notification_id", "fingerprint", "status", "starts_at", "labels", "annotations")
    return {**{k: alert.get(k) for k in keys}, "generator_url": alert.get("generator_url")}


def _alert_markdown(alert: Mapping[str, Any]) -> str:
    labels, annotations = alert.get("labels", {}), alert.get("annotations", {})
    observed = annotations.get("description") or annotations.get("summary") or "(no description)"
    return f"**{labels.get('alertname', 'alert')}** (since {alert.get('starts_at', '?')}): {observed}"


def _metrics_markdown(metrics: MetricsSnapshot | None) -> list[str]:
    if metrics is None or metrics.unavailable:
        return [f"{UNAVAILABLE} ({metrics.unavailable if metrics else 'not collected'})"]
    rows = [f"| {n} | {c} | {s} |" for n, c, s in metric_rows(metrics)]
    return [f"At {metrics.at}:", "", "| metric | canary | stable |", "|---|---|---|", *rows]


def _step_report(name: str, step: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("result", "duration_ms", "attempts", "reason", "message", "before", "after")
    return {**{k: step.get(k) for k in keys}, "details": details(name, step)}


def _actions_markdown(actions: Sequence[Mapping[str, Any]]) -> list[str]:
    if not actions:
        return ["none"]
    rows = ["| step | result | duration | attempts | details |", "|---|---|---|---|---|"]
    for action in actions:
        detail = "; ".join(cell(line) for line in action["details"])
        rows.append(
            f"| {cell(action['step'])} | {cell(action['result'])} | {action.get('duration_ms')} ms"
            f" | {action.get('attempts')} | {detail} |"
        )
    return rows


def _stable_markdown(stable: Mapping[str, Any]) -> list[str]:
    lines = [f"- {cell(stable['summary'])}"]
    decided = stable.get("at_decision")
    if decided and stable.get("after_rollback"):
        lines.append(f"- when the rollback was decided: {decided.get('ready')}/{decided.get('desired')} ready")
    return lines
