"""Objects to pre-load into the emulator: a canary app's stable and canary Deployments and the canary Ingress, and
the pods of a crash-looping canary with their logs and Events."""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

JsonDict = dict[str, Any]


class SeedObject(NamedTuple):
    """An object to pre-load: ``resource`` is ``"group/version/plural"`` (``"v1/events"`` for core)."""

    resource: str
    namespace: str | None
    name: str
    body: JsonDict


def _deployment(namespace: str, name: str, *, labels: dict[str, str], replicas: int, image: str) -> SeedObject:
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": labels["app"], "image": image}]},
        },
    }
    status = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
    body = {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec, "status": status}
    return SeedObject("apps/v1/deployments", namespace, name, body)


def _ingress(namespace: str, name: str, *, service: str, annotations: dict[str, str]) -> SeedObject:
    backend = {"service": {"name": service, "port": {"number": 80}}}
    rule = {"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
    body = {
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"ingressClassName": "nginx", "rules": [rule]},
    }
    return SeedObject("networking.k8s.io/v1/ingresses", namespace, name, body)


def sample_canary_objects(namespace: str = "shop", app: str = "checkout") -> list[SeedObject]:
    """A stable and a canary Deployment of ``app``, each with its NGINX Ingress (the canary one at 10 %)."""
    canary = f"{app}-canary"
    canary_annotations = {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "10",
    }
    return [
        _deployment(namespace, app, labels={"app": app, "version": "stable"}, replicas=4, image=f"{app}:1.4.2"),
        _deployment(namespace, canary, labels={"app": app, "version": "canary"}, replicas=2, image=f"{app}:1.5.0"),
        _ingress(namespace, app, service=app, annotations={}),
        _ingress(namespace, canary, service=canary, annotations=canary_annotations),
    ]


class LogSeed(NamedTuple):
    """A container's log text for the emulator's ``pods/{pod}/log`` (``previous``: the instance before the restart)."""

    namespace: str
    pod: str
    container: str
    text: str
    previous: bool = False


_POD_HASH = "7c9d5b8f4d"
_STARTED, _OOM_AT, _SEEN = "2026-11-27T20:40:03Z", "2026-11-27T20:43:58Z", "2026-11-27T20:44:02Z"


def _hex(text: str, length: int) -> str:
    """Stable made-up identifiers (names, uids) from ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _owner(replicaset: str) -> JsonDict:
    uid = f"00000000-0000-4000-8000-{_hex(replicaset, 12)}"
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replicaset, "uid": uid, "controller": True}


def _pod(namespace: str, name: str, *, labels: dict[str, str], replicaset: str, image: str, oom: bool) -> SeedObject:
    container = labels["app"]
    status: JsonDict = {
        "name": container,
        "image": image,
        "imageID": f"registry.example.com/{image}@sha256:{'ab' * 32}",
        "ready": not oom,
        "started": not oom,
        "restartCount": 3 if oom else 0,
        "state": {"running": {"startedAt": _STARTED}},
    }
    if oom:  # restarted after running out of memory, now backing off before the next start
        status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off 40s restarting {name}"}}
        terminated = {"reason": "OOMKilled", "exitCode": 137, "startedAt": _STARTED, "finishedAt": _OOM_AT}
        status["lastState"] = {"terminated": terminated}
    ready = "False" if oom else "True"
    body = {
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [_owner(replicaset)]},
        "spec": {"containers": [{"name": container, "image": image}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": ready}],
            "containerStatuses": [status],
        },
    }
    return SeedObject("v1/pods", namespace, name, body)


def _pod_event(namespace: str, pod: str, *, reason: str, message: str, count: int, warning: bool) -> SeedObject:
    name = f"{pod}.{_hex(pod + reason, 12)}"
    body = {
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": pod},
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "count": count,
        "firstTimestamp": _STARTED,
        "lastTimestamp": _SEEN,
        "source": {"component": "kubelet"},
    }
    return SeedObject("v1/events", namespace, name, body)


def sample_canary_pods(
    namespace: str = "shop", app: str = "checkout", *, replicas: int = 2, oom: bool = True
) -> list[SeedObject | LogSeed]:
    """The canary's pods as a crash-looping canary leaves them (``oom``: each OOMKilled 3 times, now in
    CrashLoopBackOff, with BackOff Events and the log of the instance that was killed), one healthy stable pod that
    the same ``app`` label also selects, and their logs (:class:`LogSeed`, for :meth:`Emulator.seed`)."""
    canary, image = f"{app}-canary", f"{app}:1.5.0"
    found: list[SeedObject | LogSeed] = []
    for index in range(replicas):
        pod = f"{canary}-{_POD_HASH}-{_hex(f'{canary}/{index}', 5)}"
        labels = {"app": app, "version": "canary", "pod-template-hash": _POD_HASH}
        found.append(_pod(namespace, pod, labels=labels, replicaset=f"{canary}-{_POD_HASH}", image=image, oom=oom))
        lines = [f"{_STARTED} INFO starting {app} 1.5.0", f"{_STARTED} INFO loading the catalog cache into memory"]
        found.append(LogSeed(namespace, pod, app, "\n".join(lines) + "\n"))
        if oom:
            killed = [*lines, f"{_OOM_AT} WARN cache at 498MiB of 512MiB, still growing"]
            found.append(LogSeed(namespace, pod, app, "\n".join(killed) + "\n", previous=True))
            message = f"Back-off restarting failed container {app} in pod {pod}"
            found.append(_pod_event(namespace, pod, reason="BackOff", message=message, count=4, warning=True))
        found.append(
            _pod_event(namespace, pod, reason="Started", message=f"Started container {app}", count=4, warning=False)
        )
    stable = f"{app}-5d8f6c7b9a-q8r2t"
    labels = {"app": app, "version": "stable", "pod-template-hash": "5d8f6c7b9a"}
    found.append(
        _pod(namespace, stable, labels=labels, replicaset=f"{app}-5d8f6c7b9a", image=f"{app}:1.4.2", oom=False)
    )
    found.append(LogSeed(namespace, stable, app, f"{_STARTED} INFO stable {app} 1.4.2 serving\n"))
    return found
