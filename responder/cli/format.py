"""How audit entries and incidents read for people (``audit tail``, ``audit list``, ``incident``, the demo): one
line per entry, every kind in words; ``--json`` gives machines the raw entries instead. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# Every kind the responder writes to its audit log (``audit list --kind`` also takes a prefix: ``restore``).
KINDS = (
    "receipt",
    "receipt.events",
    "receipt.repeats",
    "alert",  # one per alert, written before receipts carried their alerts (older databases)
    "decision",
    "rollback.intent",
    "rollback.result",
    "rollback.retry",
    "rollback.override",
    "rollback.error",
    "rollback.interrupted",
    "action.intent",
    "action",
    "restore.intent",
    "restore.action",
    "restore.result",
    "replay",
    "pause",
    "resume",
    "notification",
    "rejected",
    "rejected.summary",
    "quarantine",
    "leadership",
    "flagger.gate",
    "gitops.rejected",
    "gitops.webhook",
)


def expand_kind(text: str) -> list[str]:
    """The kinds ``--kind text`` means: itself when known, else every kind it prefixes (``restore`` ->
    ``restore.intent``, ``restore.action``, ``restore.result``); empty when it names none."""
    if text in KINDS:
        return [text]
    return [k for k in KINDS if k.startswith(text.rstrip(".") + ".")]


def value(item: Any) -> str:
    """A value as people read it: no Python reprs, no JSON braces."""
    if item is None or item == "" or item == {} or item == []:
        return "-"
    if isinstance(item, bool):
        return "yes" if item else "no"
    if isinstance(item, float):
        return f"{item:g}"
    if isinstance(item, Mapping):
        return ", ".join(f"{k} {value(v)}" for k, v in item.items())
    if isinstance(item, list | tuple):
        return "; ".join(value(v) for v in item)
    return str(item)


def change(before: Any, after: Any) -> str:
    """What a step changed: only the fields that differ, as ``field old -> new`` (nested fields by path). A step
    that only read (nothing after) or only created (nothing before) shows nothing here."""
    if not before or not after:
        return ""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        return ", ".join(_diff(before, after, ())) or "no change"
    return f"{value(before)} -> {value(after)}"


def _diff(before: Mapping[str, Any], after: Mapping[str, Any], path: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            found += _diff(old, new, (*path, str(key)))
        else:
            found.append(f"{' '.join((*path, str(key)))} {value(old)} -> {value(new)}")
    return found


def _attempts(data: Mapping[str, Any]) -> str:
    n = int(data.get("attempts") or 1)
    ms = data.get("duration_ms")
    took = f"{value(ms)} ms" if ms is not None else ""
    return ", ".join(x for x in (took, f"{n} attempts" if n > 1 else "") if x)


def _step(data: Mapping[str, Any]) -> str:
    result = str(data.get("result") or "?")
    if result == "intent":
        return f"{data.get('step')}: about to set {value(data.get('planned'))} (read {value(data.get('before'))})"
    what = change(data.get("before"), data.get("after"))
    timing = _attempts(data)
    parts = [f"{data.get('step')}: {result}", what, f"({timing})" if timing else "", str(data.get("message") or "")]
    return " ".join(p for p in parts if p)


def _alerts(data: Mapping[str, Any]) -> str:
    """The alerts a receipt carries, as ``: name status fp=…`` (the first three, then how many more)."""
    events = [e for e in data.get("events") or [] if isinstance(e, Mapping)]
    if not events:
        return ""
    shown = ", ".join(f"{e.get('alertname')} {e.get('status')} fp={e.get('fingerprint')}" for e in events[:3])
    return f": {shown}" + (f" and {len(events) - 3} more" if len(events) > 3 else "")


def _restore_intent(data: Mapping[str, Any]) -> str:
    point = data.get("point") or {}
    mode = "dry run: " if data.get("dry_run") else ""
    return f"{mode}restore of {data.get('incident')} back to {point.get('replicas', '?')} replicas"


_DETAIL: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "receipt": lambda d: (
        f"notification {d.get('notification_id')} ({d.get('alerts')} alerts, {d.get('status')},"
        f" from {d.get('external_url') or '?'})" + _alerts(d)
    ),
    "receipt.events": lambda d: f"notification {d.get('notification_id')}, part {d.get('part')}" + _alerts(d),
    "receipt.repeats": lambda d: (
        f"{d.get('repeats')} byte-for-byte repeat{'' if d.get('repeats') == 1 else 's'} of notification"
        f" {', '.join(str(n.get('notification_id')) for n in d.get('notifications') or [] if isinstance(n, Mapping))}:"
        f" every alert {str(d.get('decision')).upper()}"
    ),
    "alert": lambda d: f"{d.get('alertname')} {d.get('status')} fp={d.get('fingerprint')}",
    "decision": lambda d: f"{d.get('alertname')}: {str(d.get('outcome')).upper()} - {d.get('reason')}",
    "rollback.intent": lambda d: (
        f"{d.get('incident')} plan {' -> '.join(d.get('plan', []))}" + (" (dry run)" if d.get("dry_run") else "")
    ),
    "action": _step,
    "action.intent": _step,
    "restore.action": _step,
    "restore.intent": _restore_intent,
    "restore.result": lambda d: f"restore of {d.get('incident')}: {d.get('status')}",
    "rollback.result": lambda d: (
        f"{d.get('incident')}: {d.get('status')}" + (" (retried while its alerts fire)" if d.get("retrying") else "")
    ),
    "rollback.retry": lambda d: f"{d.get('incident')}: retry {d.get('attempt')} - {d.get('reason')}",
    "replay": lambda d: (
        f"{'dry run' if d.get('dry_run') else 'executed'}{' (force)' if d.get('force') else ''} of"
        f" {value(d.get('source'))}: {len(d.get('decisions') or [])} decisions"
    ),
    "pause": lambda d: f"paused: {d.get('reason') or '(no reason given)'}",
    "resume": lambda d: f"resumed: {d.get('reason') or '(no reason given)'}",
    "notification": lambda d: (
        f"{d.get('kind')} of {d.get('incident')} to {d.get('destination')}: {d.get('result')}"
        + (f" ({d.get('reason')})" if d.get("reason") else "")
        + f" attempt {d.get('attempt')}"
    ),
    "quarantine": lambda d: f"events {value(d.get('event_ids'))} could not be recorded: {d.get('error')}",
    "rejected.summary": lambda d: f"{d.get('count')} requests without valid credentials rejected",
}


def format_entry(entry: Mapping[str, Any]) -> str:
    data = entry.get("data") or {}
    render = _DETAIL.get(str(entry["kind"]), _generic)
    detail = render(data)
    target = f" [{entry['target']}]" if entry.get("target") else ""
    actor = entry.get("actor")
    by = f" by {actor}" if actor and actor not in ("responder", "engine") else ""
    return f"#{entry['seq']:<5} {entry['ts']} {entry['kind']:<16}{target} {detail}{by}"


def _generic(data: Mapping[str, Any]) -> str:
    text = " ".join(f"{k}={value(v)}" for k, v in data.items())
    return text if len(text) <= 240 else text[:239] + "…"


def progress_line(entry: Mapping[str, Any]) -> str | None:
    """A restore's progress as it happens, from its audit entries; None for entries that say nothing new."""
    data, kind = entry.get("data") or {}, entry.get("kind")
    if kind == "restore.intent":
        return _restore_intent(data)
    if kind != "restore.action":
        return None
    step, result = str(data.get("step") or ""), str(data.get("result") or "")
    if result == "intent" and step.startswith("scale_restore"):
        return f"scaling back to {value((data.get('planned') or {}).get('replicas'))} replicas; waiting for the pods"
    if result == "intent":
        return f"{step}: about to set {value(data.get('planned'))}"
    if step.startswith("scale_restore") and result == "done":
        return f"pods ready ({change(data.get('before'), data.get('after'))})"
    return _step(data)


def incident_line(item: Mapping[str, Any]) -> str:
    """One incident of ``GET /api/v1/incidents`` in the list."""
    return f"{item.get('date', '')}  {str(item.get('status', '')):<10} {item.get('id')}  {item.get('headline', '')}"


def incident_text(report: Mapping[str, Any]) -> str:
    """An incident report (``GET /api/v1/incidents/{id}``) as people read it in a terminal."""
    lines = [str(report.get("headline") or report.get("id")), ""]
    for key in ("id", "status", "target", "date", "verdict", "reason", "canary_images", "traffic_weight"):
        if report.get(key) not in (None, "", []):
            lines.append(f"{key.replace('_', ' '):<15} {value(report[key])}")
    actions = report.get("actions") or []
    if actions:
        lines += ["", "actions:"] + [f"  {_step(a) if isinstance(a, Mapping) else value(a)}" for a in actions]
    alerts = report.get("alerts") or []
    if alerts:
        lines += ["", "alerts:"]
        for a in alerts:
            if isinstance(a, Mapping):
                labels = a.get("labels") or {}
                lines.append(
                    f"  {labels.get('alertname', a.get('alertname', 'alert'))} since {a.get('starts_at', '?')}"
                )
    links = report.get("links") or {}
    if isinstance(links, Mapping) and links:
        lines += ["", "links:"] + [f"  {k}: {v}" for k, v in links.items()]
    if isinstance(links, list) and links:
        lines += ["", "links:"] + [f"  {value(x)}" for x in links]
    commands = report.get("commands") or []
    if commands:
        lines += ["", "commands:"] + [f"  {c}" for c in commands]
    followups = report.get("followups") or []
    if followups:
        lines += ["", "since then:"] + [f"  {f.get('at', '')} {f.get('kind')}" for f in followups]
    return "\n".join(lines)
