"""NGINX Ingress canary: ``nginx.ingress.kubernetes.io/canary: "false"`` on the canary Ingress.

Turning the annotation off stops every kind of canary routing at once: canary-by-header and canary-by-cookie take
precedence over canary-weight, so setting the weight to 0 alone would leave header and cookie traffic on the
canary. The snapshot is the canary annotation alone (the restore puts exactly that back); the report also shows
the weight, header and cookie rules in force at decision time (``facts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from responder.traffic.base import Api, Json, Switch, annotations_of, register

CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"


@register
class NginxCanaryIngress(Switch):
    kind = "nginx"
    api = Api("networking.k8s.io", "v1", "ingresses")

    def snapshot(self, body: Mapping[str, Any]) -> Json:
        return {"annotations": {CANARY_ANNOTATION: annotations_of(body).get(CANARY_ANNOTATION)}}

    def is_off(self, body: Mapping[str, Any]) -> bool:
        return annotations_of(body).get(CANARY_ANNOTATION) == "false"

    def turn_off(self, body: Mapping[str, Any]) -> Json:
        return {"metadata": {"annotations": {CANARY_ANNOTATION: "false"}}}

    def restore(self, body: Mapping[str, Any], before: Mapping[str, Any]) -> Json:
        value = (before.get("annotations") or {}).get(CANARY_ANNOTATION)  # None: there was none, remove it
        return {"metadata": {"annotations": {CANARY_ANNOTATION: value}}}

    def summary(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
        was = (before.get("annotations") or {}).get(CANARY_ANNOTATION)
        return f"canary traffic off on Ingress {self.ref.name} ({CANARY_ANNOTATION} was {was!r})"

    def facts(self, body: Mapping[str, Any]) -> Json:
        """The canary routing at decision time (weight, header, cookie), for the incident report."""
        return {"annotations": {k: v for k, v in annotations_of(body).items() if k.startswith(CANARY_ANNOTATION)}}
