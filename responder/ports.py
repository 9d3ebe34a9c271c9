"""The ports: small protocols the engine depends on, implemented by the adapters (and by in-process fakes in tests).

The engine never sees a third-party exception: adapters translate them into :class:`ClusterError`, whose
``reason`` is a closed enum (retryable or permanent) that is also used as a metric label and audit field.

Traffic objects (Ingress, HTTPRoute, VirtualService ...) are read and patched through two generic calls,
``get_object`` and ``patch_object``, so a new traffic switch (:mod:`responder.traffic`) needs no adapter change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from responder.core.model import DeploymentView, EventView, FailureReason, ObjectView, PodView, ScaleView

if TYPE_CHECKING:
    from responder.store.port import Tx
    from responder.traffic.base import Api


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

    async def get_object(self, api: Api, namespace: str, name: str) -> ObjectView:
        """Any namespaced object (a traffic switch's), as plain JSON."""
        ...

    async def patch_object(
        self,
        api: Api,
        namespace: str,
        name: str,
        *,
        patch: Mapping[str, Any],
        resource_version: str,
        subresource: str | None = None,
    ) -> ObjectView:
        """A JSON merge patch (lists are replaced whole) with ``metadata.resourceVersion`` as the precondition:
        CONFLICT when the object changed since it was read, so a concurrent edit is never overwritten.
        ``subresource="status"`` patches the object's status subresource (NOT_FOUND where the kind has none)."""
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

    # -- evidence (reads only; granted by RBAC only when evidence capture is enabled) --

    async def list_pods(self, namespace: str, *, selector: str) -> list[PodView]:
        """The pods matching a label selector (the API's string form, e.g. ``app=checkout,version=canary``)."""
        ...

    async def read_log(
        self, namespace: str, pod: str, *, container: str, tail_lines: int, limit_bytes: int, previous: bool = False
    ) -> str:
        """The last ``tail_lines`` lines of a container's log, at most ``limit_bytes`` of them (the API counts
        from the start of those lines, as ``kubectl logs --tail --limit-bytes`` does); ``previous``: the log of the
        container instance before the last restart. Undecodable bytes are replaced, never raised."""
        ...

    async def list_events(self, namespace: str, *, kind: str, name: str) -> list[EventView]:
        """The core/v1 Events whose involvedObject is the object ``kind``/``name`` in ``namespace``."""
        ...

    async def ping(self) -> None:
        """Cheap reachability check for /readyz."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """Something people must hear about, handed to the notice hooks inside the transaction that records it, so a
    notification is durable exactly when the fact it reports is (the outbox and the GitOps relay rely on this).

    kinds: ``rollback`` (final status in data["status"]: done, failed, refused, dry_run), ``retry`` (a failed
    rollback is tried again), ``retry_stopped`` (its alerts resolved), ``held`` (global cap), ``refused`` (an
    acting alert with no allowed target), ``notify`` (notify-only policy), ``resolved`` (an alert resolved;
    data["fingerprint"]), ``error`` (an event that could not be processed), and the admin kinds ``paused_hold``,
    ``restored``, ``restore_failed`` ...
    """

    kind: str
    incident: str | None
    target: str | None
    data: dict[str, Any]


NoticeHook = Callable[["Tx", Notice], None]
