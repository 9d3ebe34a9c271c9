"""The bodies of the rollback and restore steps. Each reads what it needs, returns (result, before, after), and
raises :class:`Refusal` (a safety check failed: stop, change nothing) or ``ClusterError`` (retried when retryable).
Traffic steps are generic: the object's switch (:mod:`responder.traffic`) says what its state means and what to
send; these bodies read, record and write it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from responder.core.model import DeploymentView, FailureReason, Step, StepResult, TrafficRef
from responder.engine.evidence import capture
from responder.engine.rollouts import abort, retry
from responder.engine.run import Body, Memo, Planned, Refusal, Run, StepBody, TrafficPoint, settled_body
from responder.ports import ClusterError
from responder.traffic import SwitchProblem, TrafficSwitch, merged

EVENT_REASON = "CanaryRolledBack"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REJECTED_IMAGES = "canary-responder.io/rejected-images"  # comma-separated, newest first, at most _REJECTED_KEEP
REJECTED_REVISION = "canary-responder.io/rejected-revision"
REJECTED_AT = "canary-responder.io/rejected-at"
REJECTED_INCIDENT = "canary-responder.io/incident"
_REJECTED_KEEP = 10
_READY_POLL_S = 1.0
_MUTATING = frozenset({Step.TRAFFIC_OFF, Step.SCALE_ZERO})


def _note_leftover(run: Run, planned: Planned, leftover: str | None) -> None:
    if leftover:
        run.leftover[planned.id] = leftover
    else:
        run.leftover.pop(planned.id, None)


def _ref(planned: Planned) -> TrafficRef:
    assert planned.ref is not None
    return planned.ref


def _unusable(switch: TrafficSwitch, problem: SwitchProblem) -> ClusterError:
    """An object that does not fit its switch: a permanent failure of the plan (checked before any change)."""
    return ClusterError(FailureReason.INVALID, f"{switch.kind} {switch.ref.name}: {problem}")


# -- the canary Deployment --


async def read_canary(run: Run) -> DeploymentView:
    """Read the live Deployment and refuse unless it exists and carries the canary marker label."""
    target, safety = run.target, run.safety
    try:
        deployment = await run.cluster.get_deployment(target.namespace, target.deployment)
    except ClusterError as exc:
        if exc.reason is not FailureReason.NOT_FOUND:
            raise
        message = f"deployment {target.key} does not exist: nothing to roll back (check the target mapping)"
        raise Refusal(FailureReason.NOT_FOUND, message, before={}) from exc
    found = deployment.labels.get(safety.marker_label)
    if found != safety.marker_value:
        message = (
            f"deployment {target.key} has {safety.marker_label}={found!r}, not {safety.marker_value!r}: "
            "not a canary, refusing to touch it"
        )
        raise Refusal(FailureReason.NOT_CANARY, message, before=deployment_facts(deployment))
    run.deployment = deployment
    return deployment


def deployment_facts(deployment: DeploymentView) -> dict[str, Any]:
    return {
        "labels": dict(deployment.labels),
        "replicas": deployment.replicas,
        "resourceVersion": deployment.resource_version,
        "images": list(deployment.images),
        "revision": deployment.annotations.get(REVISION_ANNOTATION),
    }


# -- rollback --


async def check(run: Run, memo: Memo, planned: Planned) -> Body:
    """The marker, every traffic object able to be turned off, and the stable Deployment able to take the canary's
    traffic, read at once (reads only, harmless even if the check then refuses). The reads serve the traffic steps'
    first attempts, which saves each a round trip."""
    refs = run.target.traffic
    reads = [run.cluster.get_object(run.switch(r).api, run.target.namespace, r.name) for r in refs]
    deployment, views, stable = await asyncio.gather(read_canary(run), asyncio.gather(*reads), read_stable(run))
    facts = deployment_facts(deployment)
    if stable is not None:
        facts["stable"] = stable
    traffic: dict[str, Any] = {}
    for ref, view in zip(refs, views, strict=True):
        switch = run.switch(ref)
        try:
            switch.check(view.body)  # a plan that cannot complete fails here, before anything is changed
        except SwitchProblem as problem:
            raise _unusable(switch, problem) from problem
        run.observed[ref.key] = view
        traffic[ref.key] = switch.facts(view.body)  # the routing at decision time, for the report
    if traffic:
        facts["traffic"] = traffic
    if stable is not None and stable["ready"] == 0 and not run.ignore_stable:
        what = "does not exist" if stable.get("missing") else f"has no ready replica (0/{stable['desired']})"
        message = (
            f"stable deployment {stable['name']} {what}: turning canary traffic off would send it nowhere, so it stays"
            " on (HELD; retried while the alerts fire, or act anyway: canary-responder rollback --despite-stable)"
        )
        raise Refusal(FailureReason.STABLE_UNAVAILABLE, message, before=facts)
    return StepResult.DONE, facts, {}


async def read_stable(run: Run) -> dict[str, Any] | None:
    """The stable Deployment's health: ready and desired replicas (None: the target names no stable)."""
    name = run.target.stable
    if not name:
        return None
    try:
        stable = await run.cluster.get_deployment(run.target.namespace, name)
    except ClusterError as exc:
        if exc.reason is not FailureReason.NOT_FOUND:
            raise
        return {"name": name, "ready": 0, "desired": 0, "missing": True}
    return {"name": name, "ready": stable.ready_replicas, "desired": stable.replicas}


async def traffic_off(run: Run, memo: Memo, planned: Planned) -> Body:
    ref = _ref(planned)
    switch, namespace = run.switch(ref), run.target.namespace
    view = run.observed.pop(ref.key, None) or await run.cluster.get_object(switch.api, namespace, ref.name)
    current = memo.observed(switch.snapshot(view.body))
    _note_leftover(run, planned, switch.leftover(view.body))
    if switch.is_off(view.body):
        return settled_body(memo, current, current)
    try:
        patch = switch.turn_off(view.body)
    except SwitchProblem as problem:
        raise _unusable(switch, problem) from problem
    wanted = switch.snapshot(merged(view.body, patch))
    if run.dry_run:
        return StepResult.DRY_RUN, current, wanted
    await run.intend(current, wanted)
    patched = await run.cluster.patch_object(
        switch.api, namespace, ref.name, patch=patch, resource_version=view.resource_version
    )
    return StepResult.DONE, current, switch.snapshot(patched.body)


async def scale_zero(run: Run, memo: Memo, planned: Planned) -> Body:
    namespace, name = run.target.namespace, run.target.deployment
    # The labels may have changed since CHECK: re-check right before mutating (both reads at once).
    _, scale = await asyncio.gather(read_canary(run), run.cluster.get_scale(namespace, name))
    before = memo.observed({"replicas": scale.replicas})
    wanted: dict[str, Any] = {"replicas": 0}
    if scale.replicas == 0:
        return settled_body(memo, before, wanted)
    if run.dry_run:
        return StepResult.DRY_RUN, before, wanted
    await run.intend(before, wanted)
    scaled = await run.cluster.set_replicas(namespace, name, replicas=0, resource_version=scale.resource_version)
    return StepResult.DONE, before, {"replicas": scaled.replicas}


async def annotate(run: Run, memo: Memo, planned: Planned) -> Body:
    mark = run.mark
    assert mark is not None
    deployment = await read_canary(run)
    keys = (REJECTED_IMAGES, REJECTED_REVISION, REJECTED_AT, REJECTED_INCIDENT)
    current = {k: deployment.annotations.get(k) for k in keys}
    seen = memo.observed({"annotations": current})
    if current[REJECTED_INCIDENT] == mark.incident:
        return settled_body(memo, seen, seen)
    known = [i for i in (current[REJECTED_IMAGES] or "").split(",") if i]
    images = list(dict.fromkeys([*deployment.images, *known]))[:_REJECTED_KEEP]
    wanted: dict[str, str | None] = {
        REJECTED_IMAGES: ",".join(images),
        REJECTED_REVISION: deployment.annotations.get(REVISION_ANNOTATION),
        REJECTED_AT: mark.at,
        REJECTED_INCIDENT: mark.incident,
    }
    if run.dry_run:
        return StepResult.DRY_RUN, seen, {"annotations": wanted}
    await run.intend(seen, {"annotations": wanted})
    patched = await run.cluster.set_deployment_annotations(
        deployment.namespace, deployment.name, annotations=wanted, resource_version=deployment.resource_version
    )
    run.deployment = patched
    return StepResult.DONE, seen, {"annotations": {k: patched.annotations.get(k) for k in wanted}}


async def event(run: Run, memo: Memo, planned: Planned) -> Body:
    mutating = [o for o in run.outcomes if o.step in _MUTATING]
    if mutating and all(o.result is StepResult.NOOP for o in mutating):
        return StepResult.NOOP, {}, {}  # nothing changed in this run: nothing to announce
    stable = await _stable_after(run)
    message = _event_message(run) + (f"; {_stable_words(stable)}" if stable else "")
    wanted: dict[str, Any] = {"reason": EVENT_REASON, "message": message}
    if stable is not None:
        wanted["stable"] = stable  # the guide's "verified stable version health", recorded with the incident
    if run.dry_run:
        return StepResult.DRY_RUN, {}, wanted
    deployment = run.deployment or await run.cluster.get_deployment(run.target.namespace, run.target.deployment)
    run.check_guard()
    await run.cluster.emit_event(deployment, reason=EVENT_REASON, message=message, warning=True)
    return StepResult.DONE, {}, wanted


async def _stable_after(run: Run) -> dict[str, Any] | None:
    """Stable's health after the rollback (its failure to read is said, never fails the event)."""
    try:
        return await read_stable(run)
    except ClusterError as exc:
        return {"name": run.target.stable, "unknown": exc.message}


def _stable_words(stable: dict[str, Any]) -> str:
    if "unknown" in stable:
        return f"stable {stable['name']}: health unknown ({stable['unknown']})"
    healthy = stable["ready"] >= stable["desired"] > 0
    verdict = "verified healthy" if healthy else "NOT healthy"
    return f"stable {stable['name']} {verdict}: {stable['ready']}/{stable['desired']} ready"


def _event_message(run: Run) -> str:
    parts = [f"canary-responder rolled back canary {run.target.key}"]
    for outcome in run.outcomes:
        if outcome.step is Step.TRAFFIC_OFF and outcome.ref is not None:
            parts.append(run.switch(outcome.ref).summary(outcome.before, outcome.after))
        elif outcome.step is Step.SCALE_ZERO:
            parts.append(f"scaled from {outcome.before.get('replicas')} to 0 replicas")
    return "; ".join(parts)


# -- restore --


def _changed(what: str) -> Refusal:
    return Refusal(FailureReason.CHANGED_SINCE, f"{what} changed since the rollback; not restoring", before={})


async def restore_check(run: Run, memo: Memo, planned: Planned) -> Body:
    point = run.restore
    assert point is not None
    deployment, scale = await asyncio.gather(
        read_canary(run), run.cluster.get_scale(run.target.namespace, run.target.deployment)
    )
    facts = {**deployment_facts(deployment), "scale": scale.replicas}
    if tuple(deployment.images) != point.images:
        raise _changed(f"the canary's images ({list(deployment.images)} vs {list(point.images)})")
    if scale.replicas not in (0, point.replicas):
        raise _changed(f"the replica count (now {scale.replicas}, neither 0 nor {point.replicas})")
    traffic: dict[str, Any] = {}
    for item in point.traffic:
        switch = run.switch(item.ref)
        view = await run.cluster.get_object(switch.api, run.target.namespace, item.ref.name)
        now = switch.snapshot(view.body)
        if now not in (item.after, item.before):
            raise _changed(f"{item.ref.kind} {item.ref.name} (now {now})")
        traffic[item.ref.key] = now
    if traffic:
        facts["traffic"] = traffic
    return StepResult.DONE, facts, {}


async def scale_restore(run: Run, memo: Memo, planned: Planned) -> Body:
    point = run.restore
    assert point is not None
    namespace, name = run.target.namespace, run.target.deployment
    _, scale = await asyncio.gather(read_canary(run), run.cluster.get_scale(namespace, name))
    before = memo.observed({"replicas": scale.replicas})
    wanted: dict[str, Any] = {"replicas": point.replicas}
    if scale.replicas == point.replicas:
        if not run.dry_run:
            await _wait_ready(run, point.replicas)  # a restore run again after its pods were not ready in time
        return settled_body(memo, before, wanted)
    if run.dry_run:
        return StepResult.DRY_RUN, before, wanted
    await run.intend(before, wanted)
    scaled = await run.cluster.set_replicas(
        namespace, name, replicas=point.replicas, resource_version=scale.resource_version
    )
    await _wait_ready(run, point.replicas)
    return StepResult.DONE, before, {"replicas": scaled.replicas}


async def _wait_ready(run: Run, replicas: int) -> None:
    """Traffic comes back only to pods that can take it: wait for the restored replicas to be ready."""
    polls = max(1, int(run.ready_timeout_s / _READY_POLL_S))
    for _ in range(polls):
        deployment = await run.cluster.get_deployment(run.target.namespace, run.target.deployment)
        if deployment.ready_replicas >= replicas:
            return
        await run.sleep(_READY_POLL_S)
    raise ClusterError(
        FailureReason.NOT_READY,
        f"scaled back to {replicas} replicas, but they were not ready within {run.ready_timeout_s:.0f}s;"
        " canary traffic is still off",
    )


async def traffic_restore(run: Run, memo: Memo, planned: Planned) -> Body:
    point = run.restore
    assert point is not None
    ref = _ref(planned)
    item = next(p for p in point.traffic if p.ref == ref)
    switch, namespace = run.switch(ref), run.target.namespace
    view = await run.cluster.get_object(switch.api, namespace, ref.name)
    before = memo.observed(switch.snapshot(view.body))
    if before == item.before:
        return settled_body(memo, before, item.before)
    try:
        patch = switch.restore(view.body, item.before)
    except SwitchProblem as problem:
        raise _changed(f"{ref.kind} {ref.name} ({problem})") from problem
    if run.dry_run:
        return StepResult.DRY_RUN, before, item.before
    await run.intend(before, item.before)
    patched = await run.cluster.patch_object(
        switch.api, namespace, ref.name, patch=patch, resource_version=view.resource_version
    )
    return StepResult.DONE, before, switch.snapshot(patched.body)


async def delegate(run: Run, memo: Memo, planned: Planned) -> Body:
    """A canary another controller owns (Flagger): the decision is the action, nothing is read or changed; the
    controller's rollback webhook now gets "roll back" from the gate."""
    to = run.target.delegate
    run.notes[planned.id] = f"handed to {to}: it rolls the canary back when its rollback webhook asks the gate"
    return (StepResult.DRY_RUN if run.dry_run else StepResult.DONE), {}, {"to": to}


ROLLBACK_BODIES: dict[Step, StepBody] = {
    Step.CHECK: check,
    Step.TRAFFIC_OFF: traffic_off,
    Step.EVIDENCE: capture,
    Step.SCALE_ZERO: scale_zero,
    Step.ANNOTATE: annotate,
    Step.EVENT: event,
    Step.ABORT: abort,
    Step.DELEGATE: delegate,
}
RESTORE_BODIES: dict[Step, StepBody] = {
    Step.CHECK: restore_check,
    Step.SCALE_RESTORE: scale_restore,
    Step.TRAFFIC_RESTORE: traffic_restore,
    Step.RETRY: retry,
}
__all__ = ["RESTORE_BODIES", "ROLLBACK_BODIES", "TrafficPoint"]
