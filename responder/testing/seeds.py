"""Objects to pre-load into the emulator: a canary app's stable and canary Deployments and the canary Ingress."""

from __future__ import annotations

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
