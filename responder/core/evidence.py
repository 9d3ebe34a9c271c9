"""What captured evidence shows, in words: pure functions of the ``evidence`` step's record (its ``after``:
``{"pods": [...], "missing": [...]}``), shared by the step's own short message and the incident report's root-cause
section. The record's shape is documented in docs/evidence.md."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

OOM_KILLED = "OOMKilled"


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, Sequence) else []


def _count(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def termination_words(ended: Mapping[str, Any]) -> str:
    """``OOMKilled``, ``terminated: Error (exit code 1)`` ..."""
    reason, code = ended.get("reason"), ended.get("exit_code")
    if reason == OOM_KILLED:
        return OOM_KILLED
    detail = f" (exit code {code})" if code is not None else ""
    return f"terminated: {reason}{detail}" if reason else f"terminated{detail}"


def findings(after: Mapping[str, Any]) -> list[str]:
    """One line per fact the evidence shows, most telling first: "2 of 2 pods OOMKilled", "3 of 3 pods not ready",
    "5 container restarts", "Warning events: BackOff x12, Unhealthy x3". Empty when no pod was captured."""
    pods = _mappings(after.get("pods"))
    if not pods:
        return []
    total, plural = len(pods), "s" if len(pods) > 1 else ""
    ends: Counter[str] = Counter()
    for pod in pods:
        containers = _mappings(pod.get("containers"))
        ended = [c["last_termination"] for c in containers if isinstance(c.get("last_termination"), Mapping)]
        ends.update({termination_words(e) for e in ended})
    lines = [f"{count} of {total} pod{plural} {words}" for words, count in ends.most_common()]
    not_ready = sum(1 for pod in pods if pod.get("ready") is False)
    if not_ready:
        lines.append(f"{not_ready} of {total} pod{plural} not ready")
    restarts = sum(_count(pod.get("restarts")) for pod in pods)
    if restarts:
        lines.append(f"{restarts} container restart{'s' if restarts > 1 else ''}")
    warnings: Counter[str] = Counter()
    for pod in pods:
        for event in _mappings(pod.get("events")):
            if event.get("type") == "Warning":
                warnings[str(event.get("reason") or "?")] += _count(event.get("count"), 1)
    if warnings:
        lines.append("Warning events: " + ", ".join(f"{reason} x{count}" for reason, count in warnings.most_common(5)))
    return lines
