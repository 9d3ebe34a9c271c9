"""What an incident page shows, as plain values for the templates: the timeline in the order things happened
(alerts -> decision -> steps -> notifications -> follow-ups such as a restore or a resolution), stable's health, the
evidence captured before the canary's pods went, the metrics and the links.

Pure functions of the incident's content (:mod:`responder.notify.incident`). Everything here is plain text: the
templates escape all of it, and only absolute http(s) URLs ever become links (an alert's ``generatorURL`` or
``runbook_url`` is whatever its sender wrote, ``javascript:`` included).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from responder.core.evidence import findings
from responder.notify.incident import Incident, followup_text, headline, ordered_steps, verdict

MAX_VALUE_CHARS = 300  # one value in a before -> after row; whole objects are in the JSON download
MAX_LOG_CHARS = 64 * 1024  # per log tail shown (capture bounds it already; this bounds a page whatever was stored)
EVIDENCE_STEP = "evidence"
AUDIT_LABEL = "Audit record"  # the link to the page itself, left out of the page's own links

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    path: str
    before: str
    after: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One line of the timeline. ``kind``: alert, decision, step, notification, followup."""

    kind: str
    title: str
    at: str = ""
    status: str = ""
    lines: tuple[str, ...] = ()
    labels: Pairs = ()
    annotations: Pairs = ()
    facts: Pairs = ()  # what a step only read, or only wrote
    facts_label: str = ""
    changes: tuple[Change, ...] = ()
    link: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StableHealth:
    text: str
    healthy: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerView:
    name: str
    restarts: str
    termination: str  # "" when it never terminated
    log_tail: str
    log_truncated: bool
    previous_log_tail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EventView:
    type: str
    reason: str
    message: str
    count: str
    last_seen: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PodView:
    name: str
    phase: str
    ready: str
    restarts: str
    containers: tuple[ContainerView, ...]
    events: tuple[EventView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceView:
    result: str
    message: str
    findings: tuple[str, ...]
    missing: tuple[str, ...]
    pods: tuple[PodView, ...]
    other: Pairs  # whatever else the record holds (a newer capture's fields), shown as plain text


def is_web_url(url: object) -> bool:
    """Only absolute http(s) URLs may become links."""
    return isinstance(url, str) and url.strip().lower().startswith(("https://", "http://"))


def timeline(
    incident: Incident, followups: Sequence[Mapping[str, Any]], deliveries: Sequence[Mapping[str, Any]]
) -> list[Entry]:
    """The incident from first alert to the latest follow-up, in that order (``deliveries``: the first message at
    each destination, ``{destination, state, attempts, at}``)."""
    return [
        *(_alert_entry(a) for a in incident.alerts),
        _decision_entry(incident),
        *(_step_entry(name, step) for name, step in ordered_steps(incident.steps)),
        *(_delivery_entry(d) for d in deliveries),
        *(_followup_entry(f) for f in followups),
    ]


def _alert_entry(alert: Mapping[str, Any]) -> Entry:
    labels = _mapping(alert.get("labels"))
    annotations = _mapping(alert.get("annotations"))
    status = _text(alert.get("status") or "firing")
    lines = [f"{status} since {_text(alert.get('starts_at') or '?')}"]
    if alert.get("notification_id"):
        lines.append(f"received in notification #{_text(alert['notification_id'])}")
    source = alert.get("generator_url")
    return Entry(
        kind="alert",
        title=f"Alert {_text(labels.get('alertname') or 'alert')}",
        at=_text(alert.get("starts_at") or ""),
        status=status,
        lines=tuple(lines),
        labels=_pairs(labels),
        annotations=_pairs(annotations),
        link=("Alert source", str(source)) if is_web_url(source) else None,
    )


def _decision_entry(incident: Incident) -> Entry:
    lines = [verdict(incident)]
    if incident.reason:
        lines.append(f"Reason: {incident.reason}")
    if incident.dry_run:
        lines.append("Dry run: nothing was changed.")
    return Entry(
        kind="decision", title=headline(incident), at=incident.created_at, status=incident.status, lines=tuple(lines)
    )


def _step_entry(name: str, step: Mapping[str, Any]) -> Entry:
    lines = [_timing(step)]
    for key in ("reason", "message"):
        if step.get(key):
            lines.append(f"{key}: {_text(step[key])}")
    before, after = _mapping(step.get("before")), _mapping(step.get("after"))
    entry = Entry(kind="step", title=name, status=_text(step.get("result")), lines=tuple(lines))
    if name == EVIDENCE_STEP:  # logs and Events: their own section
        return replace(entry, lines=(*lines, "what was captured: see Evidence below"))
    if not after:  # a step that only read (the safety check): what it saw
        return replace(entry, facts=_flat(before), facts_label="read")
    if not before:  # a step that only wrote (the Kubernetes Event): what it wrote
        return replace(entry, facts=_flat(after), facts_label="wrote")
    return replace(entry, changes=_changes(before, after))


def _timing(step: Mapping[str, Any]) -> str:
    duration, attempts = step.get("duration_ms"), step.get("attempts")
    took = f"took {duration} ms" if duration is not None else "duration not recorded"
    return f"{took}, {attempts} attempt(s)" if attempts is not None else took


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[Change, ...]:
    old, new = dict(_flat(before)), dict(_flat(after))
    paths = list(dict.fromkeys([*old, *new]))
    return tuple(Change(path=p, before=old.get(p, "-"), after=new.get(p, "-")) for p in paths)


def _delivery_entry(delivery: Mapping[str, Any]) -> Entry:
    destination = _text(delivery.get("destination") or "?")
    return Entry(
        kind="notification",
        title=f"{destination.capitalize()} message",
        at=_text(delivery.get("at") or ""),
        status=_text(delivery.get("state") or ""),
        lines=(f"{_text(delivery.get('attempts') or 0)} delivery attempt(s)",),
    )


def _followup_entry(followup: Mapping[str, Any]) -> Entry:
    kind = _text(followup.get("kind") or "")
    return Entry(
        kind="followup",
        title=kind.replace("_", " ").capitalize(),
        at=_text(followup.get("at") or ""),
        status=_text(followup.get("delivery") or ""),
        lines=(followup_text(kind, followup),),
    )


def stable_health(incident: Incident) -> StableHealth | None:
    """Stable's replicas as a step recorded them ("stable": {name, ready, desired, available}), newest fact first."""
    for _, step in reversed(ordered_steps(incident.steps)):
        for side in ("after", "before"):
            stable = _mapping(_mapping(step.get(side)).get("stable"))
            if stable:
                return _describe_stable(stable)
    return None


def _describe_stable(stable: Mapping[str, Any]) -> StableHealth:
    name = _text(stable.get("name") or "stable")
    if stable.get("unknown"):
        return StableHealth(text=f"{name}: health unknown ({_text(stable['unknown'])})", healthy=False)
    if stable.get("missing"):
        return StableHealth(text=f"{name}: the Deployment does not exist", healthy=False)
    ready, desired, available = stable.get("ready"), stable.get("desired"), stable.get("available")
    text = f"{name}: {_text(ready)}/{_text(desired)} ready"
    if available is not None:
        text += f", {_text(available)} available"
    healthy = isinstance(ready, int) and isinstance(desired, int) and desired > 0 and ready >= desired
    return StableHealth(text=text, healthy=healthy)


def evidence(incident: Incident) -> EvidenceView | None:
    """The evidence captured before the scale-down (the ``evidence`` step), None when there is none. Fields this
    page does not know are still shown, flattened to text: a page never hides what was captured."""
    step = _mapping(incident.steps.get(EVIDENCE_STEP))
    if not step:
        return None
    after = _mapping(step.get("after"))
    return EvidenceView(
        result=_text(step.get("result") or ""),
        message=_text(step.get("message") or ""),
        findings=_findings(after),
        missing=_missing(after.get("missing")),
        pods=tuple(_pod(_mapping(p)) for p in _list(after.get("pods"))),
        other=_flat({k: v for k, v in after.items() if k not in _EVIDENCE_KNOWN}),
    )


_EVIDENCE_KNOWN = frozenset({"pods", "missing"})


def _findings(after: Mapping[str, Any]) -> tuple[str, ...]:
    """The report's words for what the evidence shows; none when the record is not the shape they expect."""
    try:
        return tuple(findings(after))
    except (TypeError, ValueError, AttributeError, KeyError):
        return ()


def _pod(pod: Mapping[str, Any]) -> PodView:
    return PodView(
        name=_text(pod.get("name") or "?"),
        phase=_text(pod.get("phase") or "?"),
        ready=_readiness(pod.get("ready")),
        restarts=_text(pod.get("restarts")),
        containers=tuple(_container(_mapping(c)) for c in _list(pod.get("containers"))),
        events=tuple(_event(_mapping(e)) for e in _list(pod.get("events"))),
    )


def _readiness(value: Any) -> str:
    if value is True:
        return "ready"
    if value is False:
        return "not ready"
    return f"ready: {_text(value)}"


def _container(container: Mapping[str, Any]) -> ContainerView:
    ended = _mapping(container.get("last_termination"))
    termination = ""
    if ended:
        termination = f"{_text(ended.get('reason') or 'terminated')} (exit code {_text(ended.get('exit_code'))})"
        if ended.get("finished_at"):
            termination += f" at {_text(ended['finished_at'])}"
    return ContainerView(
        name=_text(container.get("name") or "?"),
        restarts=_text(container.get("restarts")),
        termination=termination,
        log_tail=_log(container.get("log_tail")),
        log_truncated=bool(container.get("log_truncated")),
        previous_log_tail=_log(container.get("previous_log_tail")),
    )


def _event(event: Mapping[str, Any]) -> EventView:
    return EventView(
        type=_text(event.get("type") or ""),
        reason=_text(event.get("reason") or ""),
        message=_text(event.get("message") or ""),
        count=_text(event.get("count")),
        last_seen=_text(event.get("last_seen") or ""),
    )


def _missing(value: Any) -> tuple[str, ...]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (f"{value} item(s)",)
    return tuple(_text(m) for m in _list(value))


def epoch_iso(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):  # beyond year 9999: only a made-up expiry gets here
        return f"{seconds:.0f} (Unix time)"


# -- plain text from stored JSON, whatever its shape --


def _flat(value: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Pairs:
    found: list[tuple[str, str]] = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item and depth < 3:
            found.extend(_flat(item, f"{path}.", depth + 1))
        else:
            found.append((path, _value(item)))
    return tuple(found)


def _value(item: Any) -> str:
    if isinstance(item, list) and all(not isinstance(i, Mapping | list) for i in item):
        text = ", ".join(_text(i) for i in item) or "[]"
    else:
        text = _text(item)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return str(value)


def _log(value: Any) -> str:
    text = "\n".join(_text(line) for line in value) if isinstance(value, list) else (value or "")
    text = str(text)
    return text if len(text) <= MAX_LOG_CHARS else "…" + text[-MAX_LOG_CHARS:]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else ()


def _pairs(mapping: Mapping[str, Any]) -> Pairs:
    return tuple((str(k), _text(v)) for k, v in mapping.items())
