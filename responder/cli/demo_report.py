"""What the demo says it did, in words a reader can check against the emulator's record: which canary had its
traffic turned off before its scale-down (and when, after the first webhook), which one was left alone, that no
stable Deployment was touched, and on which Deployment each Event was written. Also the demo's own files: a new
run in the same directory starts from none of the previous run's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from responder.testing.emulator import Emulator, Mutation

# Everything a demo run writes into its directory (and nothing else is ever removed from it).
DEMO_FILES = (
    "responder.db",
    "responder.db-wal",
    "responder.db-shm",
    "config.yaml",
    "incident-page.png",
    "incident-page-phone.png",
    "secrets/webhook-token",
    "secrets/admin-token",
    "secrets/page-signing-key",
    "secrets/slack-webhook-url",
    "secrets/teams-webhook-url",
)


def start_clean(workdir: Path) -> list[str]:
    """Remove a previous run's files from ``workdir`` (only the demo's own); return what was removed."""
    removed = []
    for name in DEMO_FILES:
        path = workdir / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    return removed


def what_to_check(
    emulator: Emulator, *, apps: Sequence[str], acted: Sequence[str], t0: float
) -> tuple[list[str], bool]:
    """One sentence per canary about the order of its calls (times after the first webhook ``t0``), and one about
    the stable Deployments; and whether everything is as the scenarios expect."""
    lines, ok = [], True
    for app in apps:
        name = f"{app}-canary"
        ingress = _first(emulator.mutations_of("Ingress", name, namespace="shop"), "PATCH")
        scale = _first([m for m in emulator.mutations_of("Deployment", name, namespace="shop") if m.ok], "PATCH")
        if app not in acted:
            quiet = ingress is None and scale is None
            ok = ok and quiet
            lines.append(
                f"shop/{name}: left alone (its alert resolved before the persist time): "
                + ("no call changed it" if quiet else "UNEXPECTED: it was changed")
            )
        elif ingress is not None and scale is not None and ingress.at <= scale.at:
            lines.append(
                f"shop/{name}: canary traffic was turned off before the scale-down"
                f" (PATCH ingress at t+{_ms(ingress, t0)} ms, PATCH scale at t+{_ms(scale, t0)} ms)"
            )
        else:
            ok = False
            lines.append(f"shop/{name}: NOT as expected: ingress patch {_when(ingress, t0)}, scale {_when(scale, t0)}")
    touched = sorted({m.name or "" for app in apps for m in emulator.mutations_of("Deployment", app)})
    ok = ok and not touched
    lines.append(
        "stable Deployments untouched: no mutating call addressed " + ", ".join(f"shop/{a}" for a in apps)
        if not touched
        else f"UNEXPECTED: stable Deployments changed: {', '.join(touched)}"
    )
    return lines, ok


def mutation_line(m: Mutation, t0: float) -> str:
    """A mutating call as the demo lists it; an Event names the object it is about."""
    about = _event_subject(m.body) if m.path.endswith("/events") else ""
    return f"t+{_ms(m, t0):>5} ms  {m.method:<6} {m.path}  -> {m.status}{about}"


def _event_subject(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    subject = body.get("regarding") or body.get("involvedObject") or {}
    if not isinstance(subject, dict) or not subject.get("name"):
        return ""
    reason = f" {body['reason']}" if body.get("reason") else ""
    return f"  (Event{reason} on {subject.get('kind', 'object')} {subject.get('namespace', '?')}/{subject['name']})"


def _first(mutations: list[Mutation], method: str) -> Mutation | None:
    return next((m for m in mutations if m.method == method), None)


def _ms(m: Mutation, t0: float) -> int:
    return max(0, round((m.at - t0) * 1000))


def _when(m: Mutation | None, t0: float) -> str:
    return "never" if m is None else f"at t+{_ms(m, t0)} ms"
