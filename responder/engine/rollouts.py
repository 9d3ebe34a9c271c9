"""Argo Rollouts: a canary that an Argo Rollouts ``Rollout`` runs is rolled back by **aborting** its update, the
change ``kubectl argo rollouts abort`` makes: the merge patch ``{"status": {"abort": true}}`` on the Rollout's
``status`` subresource, or on the Rollout itself where an older Argo Rollouts has no such subresource (the
command falls back the same way on NotFound). The Rollouts controller then moves traffic and pods back to the
stable ReplicaSet; the responder never scales or patches those ReplicaSets itself (the controller owns them).
Restore is what ``kubectl argo rollouts retry`` does: ``{"status": {"abort": false}}``, after which the controller
takes up the update again.

The abort step reads the Rollout first and refuses unless it is mid-update (a canary ReplicaSet, or a blue-green
preview, that is not the stable one) and not aborted yet; the patch carries the resourceVersion it read, so a
Rollout changed in between (a new revision) is read again rather than aborted blindly. What was aborted (revision,
canary ReplicaSet and images, step and weight at the time) is recorded as the step's ``before``. The retry step
refuses when the Rollout is no longer the aborted revision the rollback left.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from responder.core.model import FailureReason, ObjectView, StepResult
from responder.engine.run import Body, Memo, Planned, Refusal, Run, settled_body
from responder.ports import ClusterError
from responder.traffic.base import Api

ROLLOUTS = Api("argoproj.io", "v1alpha1", "rollouts")
REVISION_ANNOTATION = "rollout.argoproj.io/revision"
ABORT = {"status": {"abort": True}}
RETRY = {"status": {"abort": False}}


def rollout_facts(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an incident shows about a Rollout: revision, strategy, the canary (or preview) ReplicaSet and its
    images, the step and canary weight at the time, phase and whether it is aborted."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    name = str(meta.get("name") or "")
    strategy = "blueGreen" if "blueGreen" in (spec.get("strategy") or {}) else "canary"
    pod_hash = str(status.get("currentPodHash") or "")
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    weights = ((status.get("canary") or {}).get("weights") or {}).get("canary") or {}
    facts: dict[str, Any] = {
        "rollout": name,
        "strategy": strategy,
        "revision": (meta.get("annotations") or {}).get(REVISION_ANNOTATION),
        "canary_replicaset": f"{name}-{pod_hash}" if pod_hash else None,
        "pod_hash": pod_hash or None,
        "stable_pod_hash": status.get("stableRS"),
        "images": [str(c.get("image")) for c in containers if isinstance(c, Mapping) and c.get("image")],
        "step": status.get("currentStepIndex"),
        "steps": len(((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []) or None,
        "weight": weights.get("weight"),
        "phase": status.get("phase"),
        "aborted": bool(status.get("abort")),
        "resourceVersion": meta.get("resourceVersion"),
    }
    if strategy == "blueGreen":
        blue_green = status.get("blueGreen") or {}
        facts["preview_selector"] = blue_green.get("previewSelector")
        facts["active_selector"] = blue_green.get("activeSelector")
    return facts


def _mid_update(facts: Mapping[str, Any]) -> bool:
    if facts["strategy"] == "blueGreen":
        preview = facts.get("preview_selector")
        return bool(preview) and preview != facts.get("active_selector")
    return bool(facts["pod_hash"]) and facts["pod_hash"] != facts["stable_pod_hash"]


def _public(facts: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in facts.items() if k != "resourceVersion"}


async def _read(run: Run) -> ObjectView:
    target = run.target
    try:
        return await run.cluster.get_object(ROLLOUTS, target.namespace, target.deployment)
    except ClusterError as exc:
        if exc.reason is not FailureReason.NOT_FOUND:
            raise
        message = f"rollout {target.key} does not exist: nothing to abort (check the target mapping)"
        raise Refusal(FailureReason.NOT_FOUND, message, before={}) from exc


async def _patch(run: Run, view: ObjectView, patch: Mapping[str, Any]) -> ObjectView:
    """The status subresource first; the Rollout itself where the cluster's CRD has no status subresource."""
    target = run.target
    try:
        return await run.cluster.patch_object(
            ROLLOUTS,
            target.namespace,
            target.deployment,
            patch=patch,
            resource_version=view.resource_version,
            subresource="status",
        )
    except ClusterError as exc:
        if exc.reason is not FailureReason.NOT_FOUND:
            raise
        return await run.cluster.patch_object(
            ROLLOUTS, target.namespace, target.deployment, patch=patch, resource_version=view.resource_version
        )


async def abort(run: Run, memo: Memo, planned: Planned) -> Body:
    view = await _read(run)
    facts = rollout_facts(view.body)
    current = memo.observed(_public(facts))
    if facts["aborted"]:
        return settled_body(memo, current, current)
    if not _mid_update(facts):
        message = (
            f"rollout {run.target.key} is not mid-update (phase {facts['phase']}, no canary or preview ReplicaSet "
            "apart from stable): nothing to abort"
        )
        raise Refusal(FailureReason.NOT_CANARY, message, before=_public(facts))
    wanted = {**current, "aborted": True}
    if run.dry_run:
        return StepResult.DRY_RUN, current, wanted
    await run.intend(current, wanted)
    patched = await _patch(run, view, ABORT)
    return StepResult.DONE, current, {**_public(rollout_facts(patched.body)), "aborted": True}


async def retry(run: Run, memo: Memo, planned: Planned) -> Body:
    point = run.restore
    assert point is not None and point.aborted is not None
    view = await _read(run)
    facts = rollout_facts(view.body)
    current = memo.observed(_public(facts))
    aborted = point.aborted
    if facts["pod_hash"] != aborted.get("pod_hash") or facts["revision"] != aborted.get("revision"):
        message = (
            f"rollout {run.target.key} is at revision {facts['revision']} ({facts['canary_replicaset']}), not the "
            f"aborted {aborted.get('revision')} ({aborted.get('canary_replicaset')}): changed since; not retrying"
        )
        raise Refusal(FailureReason.CHANGED_SINCE, message, before=_public(facts))
    wanted = {**current, "aborted": False}
    if not facts["aborted"]:
        return settled_body(memo, current, current)
    if run.dry_run:
        return StepResult.DRY_RUN, current, wanted
    await run.intend(current, wanted)
    patched = await _patch(run, view, RETRY)
    return StepResult.DONE, current, _public(rollout_facts(patched.body))


__all__ = ["ABORT", "RETRY", "ROLLOUTS", "abort", "retry", "rollout_facts"]
