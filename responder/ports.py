"""The ports: small protocols the engine depends on, implemented by the adapters.

The engine never sees a third-party exception: adapters translate them into :class:`ClusterError`, whose
``reason`` is a closed enum (retryable or permanent) that is also used as a metric label and audit field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from responder.core.model import DeploymentView, FailureReason, HTTPRouteView, IngressView, ScaleView


class ClusterError(Exception):
    """A Kubernetes call failed; ``reason.retryable`` says whether trying again may help."""

    def __init__(self, reason: FailureReason, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.reason.retryable


class ClusterPort(Protocol):
    """What the rollback executor needs from a Kubernetes cluster, and nothing more (least privilege)."""

    async def get_deployment(self, namespace: str, name: str) -> DeploymentView: ...

    async def get_ingress(self, namespace: str, name: str) -> IngressView: ...

    async def set_ingress_annotations(
        self, namespace: str, name: str, *, annotations: dict[str, str | None], resource_version: str
    ) -> IngressView:
        """Merge-patch annotations (``None`` deletes one), failing with CONFLICT on a stale resource_version."""
        ...

    async def get_httproute(self, namespace: str, name: str) -> HTTPRouteView:
        """A gateway.networking.k8s.io/v1 HTTPRoute."""
        ...

    async def set_httproute_rules(
        self, namespace: str, name: str, *, rules: list[dict[str, Any]], resource_version: str
    ) -> HTTPRouteView:
        """Replace ``spec.rules`` as a whole (a merge patch replaces lists), failing with CONFLICT on a stale
        resource_version: the whole list is sent, so the precondition is what keeps a concurrent edit safe."""
        ...

    async def set_deployment_annotations(
        self, namespace: str, name: str, *, annotations: Mapping[str, str | None], resource_version: str
    ) -> DeploymentView:
        """Merge-patch the Deployment's annotations (GitOps marks), failing with CONFLICT on a stale version."""
        ...

    async def get_scale(self, namespace: str, name: str) -> ScaleView: ...

    async def set_replicas(self, namespace: str, name: str, *, replicas: int, resource_version: str) -> ScaleView:
        """Patch the Deployment's /scale subresource, failing with CONFLICT on a stale resource_version."""
        ...

    async def emit_event(
        self, deployment: DeploymentView, *, reason: str, message: str, warning: bool = True
    ) -> None: ...

    async def ping(self) -> None:
        """Cheap reachability check for /readyz."""
        ...

    async def close(self) -> None: ...
