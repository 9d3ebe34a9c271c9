"""The parts of the post-rollback report that read the rollback's own record (:mod:`responder.notify.report`): each
action's before -> after, stable's health, the root cause (a placeholder for people, and what the captured
evidence shows) and the evidence itself laid out in Markdown.

Pure functions of stored JSON of any shape: a record written by an older version, or holding whatever a pod's log
said, must render, never raise. Everything that came from the cluster (log lines, Event messages, API errors) is
untrusted text: in Markdown it is put inside code fences longer than any backtick run it holds, or flattened to one
line with the characters that would start markup escaped, and stripped of control characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from responder.core.evidence import findings, termination_words
from responder.notify.incident import RESTORE_STEPS, Incident, ordered_steps

EVIDENCE_STEP = "evidence"
ROOT_CAUSE_PLACEHOLDER = (
    "To be filled in: what was wrong with the canary version, why the tests before the canary missed it, and"
    " what changes so that it cannot ship again."
)
MARKDOWN_LOG_LINES = 100  # per log in Markdown; the JSON report holds the whole captured tail
MAX_CHANGES = 6  # before -> after pairs per action in the details column
MAX_VALUE_CHARS = 80

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def split_steps(steps: Mapping[str, Any]) -> tuple[list[tuple[str, Mapping[str, Any]]], list[tuple[str, Any]]]:
    """(what the rollback did, what a restore undid), each in order."""
    ordered = ordered_steps(steps)
    undone = [(n, s) for n, s in ordered if n.split(":", 1)[0] in RESTORE_STEPS]
    return [(n, s) for n, s in ordered if n.split(":", 1)[0] not in RESTORE_STEPS], undone


# -- before -> after --


def changes(name: str, step: Mapping[str, Any]) -> list[str]:
    """``path: before → after`` for each value the step changed (a read-only step, or the evidence: none)."""
    if name == EVIDENCE_STEP:
        return []
    before, after = _flat(_mapping(step.get("before"))), _flat(_mapping(step.get("after")))
    if not after:
        return ["read only"] if step.get("result") in ("done", "noop") else []
    if not before and "message" in after:  # something new (an Event): what it says
        return [str(_mapping(step.get("after"))["message"])]
    found = [f"{key}: {before.get(key, '—')} → {value}" for key, value in after.items() if before.get(key) != value]
    found += [f"{key}: {value} → (removed)" for key, value in before.items() if key not in after]
    return found[:MAX_CHANGES] + ([f"… {len(found) - MAX_CHANGES} more"] if len(found) > MAX_CHANGES else [])


def details(name: str, step: Mapping[str, Any]) -> list[str]:
    """What the details column says: the step's message, then its before → after."""
    message = str(step.get("message") or step.get("reason") or "")
    return [*([message] if message else []), *changes(name, step)]


def _flat(value: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, Mapping) and item:
            found.update(_flat(item, f"{prefix}{key}."))
        else:
            text = "null" if item is None else str(item)
            found[f"{prefix}{key}"] = text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"
    return found


# -- stable health --


def stable_health(incident: Incident) -> dict[str, Any]:
    """Stable's replicas when the rollback was decided (the check step) and after it (the event step)."""
    decided = _mapping(_mapping(incident.steps.get("check")).get("before")).get("stable")
    after = _mapping(_mapping(incident.steps.get("event")).get("after")).get("stable")
    latest = after if isinstance(after, Mapping) else decided
    return {
        "at_decision": decided if isinstance(decided, Mapping) else None,
        "after_rollback": after if isinstance(after, Mapping) else None,
        "summary": stable_words(latest) if isinstance(latest, Mapping) else "not checked (no stable Deployment named)",
    }


def stable_words(stable: Mapping[str, Any]) -> str:
    name = str(stable.get("name") or "stable")
    if stable.get("unknown"):
        return f"{name}: health unknown ({stable['unknown']})"
    if stable.get("missing"):
        return f"{name}: the Deployment does not exist"
    ready, desired = stable.get("ready"), stable.get("desired")
    healthy = isinstance(ready, int) and isinstance(desired, int) and ready >= desired > 0
    return f"{name} {'verified healthy' if healthy else 'NOT healthy'}: {ready}/{desired} ready"


# -- root cause --


def root_cause(incident: Incident) -> dict[str, Any]:
    """The section people fill in, with what the evidence captured before the scale-down already shows."""
    step = _mapping(incident.steps.get(EVIDENCE_STEP))
    after = _mapping(step.get("after"))
    shows = findings(after)
    if not step:
        shows = ["no evidence captured (capture disabled, or the rollback did not get that far)"]
    elif not shows:
        shows = [str(step.get("message") or "no canary pod captured")]
    return {
        "to_fill_in": ROOT_CAUSE_PLACEHOLDER,
        "evidence_shows": shows,
        "evidence": step.get("result"),
        "missing": [str(m) for m in _list(after.get("missing"))],
    }


# -- the evidence in Markdown --


def evidence_markdown(incident: Incident) -> list[str]:
    step = _mapping(incident.steps.get(EVIDENCE_STEP))
    if not step:
        return ["not captured (evidence capture is disabled, or the rollback did not get that far)"]
    after = _mapping(step.get("after"))
    lines = [f"{cell(step.get('result'))}: {cell(step.get('message'))}", ""]
    missing = _list(after.get("missing"))
    if missing:
        lines += ["Missing evidence:", "", *[f"- {cell(m)}" for m in missing], ""]
    for pod in _list(after.get("pods")):
        lines += _pod_markdown(_mapping(pod))
    return lines


def _pod_markdown(pod: Mapping[str, Any]) -> list[str]:
    ready = "ready" if pod.get("ready") is True else "not ready"
    state = f"{cell(pod.get('phase'))}, {ready}, {cell(pod.get('restarts'))} restarts"
    lines = [f"### Pod {code(pod.get('name'))}: {state}", ""]
    for container in _list(pod.get("containers")):
        lines += _container_markdown(_mapping(container))
    events = [_mapping(e) for e in _list(pod.get("events"))]
    if events:
        lines += ["Events:", "", "| type | reason | count | last seen | message |", "|---|---|---|---|---|"]
        lines += [
            f"| {cell(e.get('type'))} | {cell(e.get('reason'))} | {cell(e.get('count'))} | "
            f"{cell(e.get('last_seen'))} | {cell(e.get('message'))} |"
            for e in events
        ]
        lines.append("")
    return lines


def _container_markdown(container: Mapping[str, Any]) -> list[str]:
    ended = _mapping(container.get("last_termination"))
    said = f", last {cell(termination_words(ended))}" if ended else ""
    if ended.get("finished_at"):
        said += f" at {cell(ended['finished_at'])}"
    lines = [f"- container {code(container.get('name'))}: {cell(container.get('restarts'))} restarts{said}", ""]
    truncated = " (cut to the capture's byte limit)" if container.get("log_truncated") else ""
    lines += _log_block(f"Log{truncated}:", container.get("log_tail"))
    lines += _log_block("Log of the instance before the last restart:", container.get("previous_log_tail"))
    return lines


def _log_block(title: str, text: Any) -> list[str]:
    if not isinstance(text, str):
        return []
    kept = [_CONTROL.sub("", line) for line in text.splitlines()]
    cut = len(kept) - MARKDOWN_LOG_LINES
    note = f" (last {MARKDOWN_LOG_LINES} of {len(kept)} lines; all of them in the JSON report)" if cut > 0 else ""
    body = kept[-MARKDOWN_LOG_LINES:] or ["(empty)"]
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return [f"{title}{note}", "", f"{fence}text", *body, fence, ""]


def cell(value: Any) -> str:
    """Untrusted text as one line of Markdown (a table cell or a list item) that starts no markup of its own."""
    text = _CONTROL.sub("", "-" if value is None else str(value))
    text = " ".join(text.split())
    for char, escaped in (("\\", "\\\\"), ("|", "\\|"), ("<", "&lt;"), (">", "&gt;"), ("`", "\\`"), ("[", "\\[")):
        text = text.replace(char, escaped)
    return text


def code(value: Any) -> str:
    """A name as inline code, whatever backticks it holds."""
    text = " ".join(_CONTROL.sub("", "-" if value is None else str(value)).split())
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence} {text} {fence}" if "`" in text else f"`{text}`"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else []
