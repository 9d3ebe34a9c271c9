"""The EVIDENCE step: what the canary's pods looked like, read after canary traffic is off and before the
scale-down removes them (the canary guide's first post-rollback step is "export canary logs").

For each pod of the canary Deployment (selected by its selector and owned by one of its ReplicaSets, so that a
selector shared with stable never captures stable's pods): phase, readiness, restarts, each container's last
termination, the last ``log_lines`` lines of each container's log (at most ``log_bytes``), the log of the instance
before the last restart when it restarted, and the pod's most recent Events. Everything is read concurrently and
within one time budget (``budget_s``); the scale-down waits for nothing else.

Capture only reports: a read that fails (403 on pods/log, a timeout) or that the budget cuts off is recorded as
missing evidence, never raised, so it can neither fail nor hold up the rollback. The record
(``{"pods": [...], "missing": [...]}``, see docs/evidence.md) is the step's ``after``; its result is ``done``,
``partial`` (something is missing), ``failed`` (no pod could be read) or ``skipped`` (no canary pod left).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from responder.core.evidence import findings
from responder.core.model import ContainerView, DeploymentView, EventView, PodView, StepResult
from responder.engine.run import Body, EvidenceOptions, Memo, Planned, Run
from responder.ports import ClusterError, ClusterPort

log = logging.getLogger("responder.engine")

_MISSING_CHARS = 300  # one missing-evidence line (an API message can be long)


@dataclass
class _Pod:
    """One pod's evidence as it comes in: logs by (container, previous), events once read."""

    view: PodView
    logs: dict[tuple[str, bool], tuple[str, bool]] = field(default_factory=dict)  # -> (text, truncated)
    events: list[EventView] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "name": self.view.name,
            "phase": self.view.phase,
            "ready": self.view.ready,
            "restarts": self.view.restarts,
            "containers": [self._container(c) for c in self.view.containers],
            "events": [_event(e) for e in self.events],
        }

    def _container(self, container: ContainerView) -> dict[str, Any]:
        text, truncated = self.logs.get((container.name, False), (None, False))
        previous = self.logs.get((container.name, True))
        ended = container.last_termination
        return {
            "name": container.name,
            "restarts": container.restarts,
            "last_termination": (
                {"reason": ended.reason, "exit_code": ended.exit_code, "finished_at": ended.finished_at}
                if ended
                else None
            ),
            "log_tail": text,
            "log_truncated": truncated,
            "previous_log_tail": previous[0] if previous else None,
        }


def _event(event: EventView) -> dict[str, Any]:
    return {
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "count": event.count,
        "last_seen": event.last_seen,
    }


def owned_by(pod: PodView, deployment: str) -> bool:
    """Whether a ReplicaSet of ``deployment`` (named ``<deployment>-<pod-template-hash>``) owns the pod."""
    prefix = f"ReplicaSet/{deployment}-"
    return any(o.startswith(prefix) and "-" not in o[len(prefix) :] for o in pod.owners)


class Capture:
    """One capture: what was read so far, and what is still pending (missing if the budget ends first)."""

    def __init__(self, cluster: ClusterPort, namespace: str, options: EvidenceOptions) -> None:
        self.cluster, self.namespace, self.options = cluster, namespace, options
        self.pods: list[_Pod] = []
        self.listed = False
        self.missing: list[str] = []
        self.pending: list[str] = ["pods"]  # what the budget would cut off, in order
        self.foreign = 0  # pods the selector matched that the canary Deployment does not own

    async def run(self, deployment: DeploymentView) -> None:
        if not deployment.selector:
            self.pending.clear()
            self.missing.append(f"pods: deployment {deployment.name} has no usable label selector")
            return
        found = await self.cluster.list_pods(self.namespace, selector=deployment.selector)
        self.pending.clear()
        self.listed = True
        own = sorted((p for p in found if owned_by(p, deployment.name)), key=lambda p: p.name)
        self.foreign = len(found) - len(own)
        keep = self.options.max_pods
        self.missing += [f"pod {p.name}: not captured (more than {keep} pods)" for p in own[keep:]]
        self.pods = [_Pod(p) for p in own[:keep]]
        reads = self._reads()
        self.pending = [what for what, _ in reads]
        limit = asyncio.Semaphore(self.options.concurrency)
        # A task group, not gather: should a read fail unexpectedly, the others are cancelled with it, never left
        # running (and writing into this capture) after the step has returned.
        async with asyncio.TaskGroup() as group:
            for what, read in reads:
                group.create_task(self._read(limit, what, read))

    def _reads(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """Every read, most telling first: the logs of crashed instances, then current logs, then Events."""
        previous, current, events = [], [], []
        for pod in self.pods:
            for c in pod.view.containers:
                where = f"pod {pod.view.name} container {c.name}"
                if c.restarts > 0:
                    previous.append((f"{where}: previous log", self._log_reader(pod, c.name, previous=True)))
                current.append((f"{where}: log", self._log_reader(pod, c.name, previous=False)))
            events.append((f"pod {pod.view.name}: events", self._events_reader(pod)))
        return previous + current + events

    async def _read(self, limit: asyncio.Semaphore, what: str, read: Callable[[], Awaitable[None]]) -> None:
        async with limit:
            try:
                await read()
            except ClusterError as exc:
                self.missing.append(_clip(f"{what}: {exc.message}"))
            self.pending.remove(what)

    def _log_reader(self, pod: _Pod, container: str, *, previous: bool) -> Callable[[], Awaitable[None]]:
        async def read() -> None:
            pod.logs[(container, previous)] = await self.tail(pod.view.name, container, previous=previous)

        return read

    def _events_reader(self, pod: _Pod) -> Callable[[], Awaitable[None]]:
        async def read() -> None:
            found = await self.cluster.list_events(self.namespace, kind="Pod", name=pod.view.name)
            recent = sorted(found, key=lambda e: e.last_seen or "")[-self.options.max_events :]
            pod.events = recent

        return read

    async def tail(self, pod: str, container: str, *, previous: bool) -> tuple[str, bool]:
        """The end of a log within ``log_bytes``. The API cuts ``limitBytes`` from the start of the last
        ``tailLines`` lines, which would keep the older lines and drop the newest (the crash): when the bytes run
        out, ask once more for one line fewer than fitted, which usually ends at the log's real end."""
        lines, limit = self.options.log_lines, self.options.log_bytes

        async def read(tail_lines: int) -> str:
            return await self.cluster.read_log(
                self.namespace, pod, container=container, tail_lines=tail_lines, limit_bytes=limit, previous=previous
            )

        text = await read(lines)
        if len(text.encode()) < limit:
            return text, False
        fitted = text.count("\n")
        return await read(max(1, min(lines, fitted - 1))), True

    def out_of_time(self) -> None:
        self.missing += [f"{what}: not read within the {self.options.budget_s:g}s budget" for what in self.pending]
        self.pending.clear()

    def verdict(self, elapsed_s: float) -> tuple[StepResult, str]:
        after = self.record()
        if not self.listed:
            return StepResult.FAILED, "no evidence: " + "; ".join(self.missing)
        words = "; ".join(findings(after)) or "nothing abnormal in their status"
        waiting = sorted({c.waiting for p in self.pods for c in p.view.containers if c.waiting})
        if waiting:
            words += f"; now {', '.join(waiting)}"
        message = f"{len(self.pods)} canary pod(s) captured in {elapsed_s:.2f}s: {words}"
        if self.foreign:
            message += f" ({self.foreign} other pod(s) matched the selector: not the canary's, left out)"
        if self.missing:
            return StepResult.PARTIAL, f"{message}; missing {len(self.missing)}: {self.missing[0]}"
        if not self.pods:
            return StepResult.SKIPPED, "no canary pod to capture (already gone)"
        return StepResult.DONE, message

    def record(self) -> dict[str, Any]:
        return {"pods": [p.record() for p in self.pods], "missing": list(self.missing)}


async def capture(run: Run, memo: Memo, planned: Planned) -> Body:
    """The EVIDENCE step's body: never raises a cluster error, never takes longer than the budget (plus the time
    to cancel what is in flight)."""
    options = run.evidence or EvidenceOptions()
    target = run.target
    started = time.monotonic()
    found = Capture(run.cluster, target.namespace, options)
    try:
        async with asyncio.timeout(options.budget_s):
            deployment = run.deployment or await run.cluster.get_deployment(target.namespace, target.deployment)
            await found.run(deployment)
    except TimeoutError:
        found.out_of_time()
    except ClusterError as exc:
        found.pending.clear()
        found.missing.append(_clip(f"pods: {exc.message}"))
    except Exception as exc:  # a bug or a malformed answer must not stand between traffic off and the scale-down
        log.exception("evidence capture of %s stopped", target.key)
        found.pending.clear()
        found.missing.append(f"capture stopped by an internal error ({type(exc).__name__})")
    result, message = found.verdict(time.monotonic() - started)
    run.notes[planned.id] = message
    return result, {}, found.record()


def _clip(text: str) -> str:
    return text if len(text) <= _MISSING_CHARS else text[: _MISSING_CHARS - 1] + "…"
