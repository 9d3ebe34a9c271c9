"""Resuming a rollback another run left half done (a crash, a failover): only while it is still what it was.

A rollback whose intent was recorded but whose result was not is taken up again by the next engine to start (this
replica after a restart, or the next leader). Between the two, anything may have happened: a person put the canary
back by hand, a restore was recorded, a newer rollback of the target started, or simply a long time passed. Acting
then would pull a canary out with no alert behind it. So before resuming, the record is checked against the live
objects and against everything recorded since; any mismatch closes the rollback as ABANDONED (audited, notified,
logged at ERROR) instead. If the canary is still bad its alerts keep firing and a new rollback follows.

Checked, in order:
- age: started no longer ago than ``max_age`` (``engine.resume_within``);
- nothing newer on the target: no restore since it, no later rollback of the same target;
- every step it finished still holds: a traffic object it turned off is still off, a scale-down still at 0;
- a step it was in the middle of (write-ahead intent, no result) finds the object either as read before the write
  or as the write would leave it: anything else is someone else's change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from responder.core.model import StepResult, TargetRef, TrafficRef, parse_iso
from responder.engine.rollouts import ROLLOUTS, rollout_facts
from responder.ports import ClusterPort
from responder.store import RollbackRecord
from responder.traffic import switch_for

_FINISHED = (StepResult.DONE.value, StepResult.NOOP.value)


async def stale_reason(
    cluster: ClusterPort,
    record: RollbackRecord,
    *,
    since_restore: Sequence[RollbackRecord],
    now: datetime,
    max_age: timedelta,
) -> str | None:
    """Why resuming ``record`` now would not be the rollback that was decided (None: resume it).
    ``since_restore``: the target's rollbacks since its last restore, newest first. Raises ClusterError when
    the live objects cannot be read (the caller retries)."""
    age = now - parse_iso(record.created_at)
    if age > max_age:
        return f"started {_human(age)} ago, longer than engine.resume_within ({_human(max_age)})"
    incidents = [r.incident for r in since_restore]
    if record.incident not in incidents:
        return "the target was restored after this rollback started"
    newer = incidents[: incidents.index(record.incident)]
    if newer:
        return f"a newer rollback of the target started since ({newer[0]})"
    target = record.target
    for ref in target.traffic:
        problem = await _traffic_holds(cluster, target, ref, record.steps.get(f"traffic_off:{ref.key}"))
        if problem:
            return problem
    if record.steps.get("abort"):
        return await _abort_holds(cluster, target, record.steps["abort"])
    return await _scale_holds(cluster, target, record.steps.get("scale_zero"))


async def _abort_holds(cluster: ClusterPort, target: TargetRef, step: Mapping[str, Any]) -> str | None:
    """An Argo Rollout the rollback was aborting: still the revision it read, and not taken up again since."""
    facts = rollout_facts((await cluster.get_object(ROLLOUTS, target.namespace, target.deployment)).body)
    before = step.get("before") or {}
    if (facts["pod_hash"], facts["revision"]) != (before.get("pod_hash"), before.get("revision")):
        return f"rollout {target.key} is at revision {facts['revision']} now, not {before.get('revision')}"
    if step.get("result") in _FINISHED and not facts["aborted"]:
        return f"rollout {target.key} was taken up again (retried) since the rollback aborted it"
    return None


async def _traffic_holds(
    cluster: ClusterPort, target: TargetRef, ref: TrafficRef, step: Mapping[str, Any] | None
) -> str | None:
    if not step:
        return None
    switch = switch_for(ref, namespace=target.namespace)
    view = await cluster.get_object(switch.api, target.namespace, ref.name)
    now = switch.snapshot(view.body)
    if step.get("result") in _FINISHED:
        if not switch.is_off(view.body):
            return f"canary traffic on {ref.kind} {ref.name} was turned back on since the rollback turned it off"
    elif step.get("result") == "intent" and now not in (step.get("before"), step.get("planned")):
        return f"{ref.kind} {ref.name} changed since the rollback read it (now {now})"
    return None


async def _scale_holds(cluster: ClusterPort, target: TargetRef, step: Mapping[str, Any] | None) -> str | None:
    if not step:
        return None
    scale = await cluster.get_scale(target.namespace, target.deployment)
    if step.get("result") in _FINISHED:
        if scale.replicas != 0:
            return f"the canary was scaled back to {scale.replicas} replicas since the rollback scaled it to 0"
    elif step.get("result") == "intent":
        before = (step.get("before") or {}).get("replicas")
        if scale.replicas not in (before, 0):
            return f"the canary's replica count changed since the rollback read it ({before} -> {scale.replicas})"
    return None


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
