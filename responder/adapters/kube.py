"""The Kubernetes adapter: :class:`KubeCluster` implements :class:`responder.ports.ClusterPort`.

With :mod:`responder.adapters.leader` (the Lease) this is the only module of the product that imports
``kubernetes_asyncio``, and only the parts it uses (:mod:`responder.adapters.kube_imports`). It owns three things:

- the client configuration (explicit API URL, in-cluster service account, or kubeconfig), see :func:`open_cluster`;
- the calls themselves, each with a per-request timeout; patches are JSON merge patches that carry
  ``metadata.resourceVersion`` as the optimistic-concurrency precondition, so a concurrent writer makes the API
  answer 409 instead of our patch silently overwriting a change we never saw;
- the translation of every library failure (``ApiException``, aiohttp and socket errors, timeouts) into
  :class:`responder.ports.ClusterError` with a closed :class:`FailureReason`: no third-party exception leaves here.
"""

from __future__ import annotations

import datetime
import json
import socket
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar, cast

import aiohttp

from responder import __version__
from responder.adapters.kube_imports import lazy_client
from responder.core.model import (
    ContainerView,
    DeploymentView,
    EventView,
    FailureReason,
    ObjectView,
    PodView,
    ScaleView,
    Termination,
)
from responder.ports import ClusterError
from responder.traffic.base import Api

lazy_client()  # before the library's first import: load only the API classes and models used here

from kubernetes_asyncio import client, config  # noqa: E402
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: E402
from kubernetes_asyncio.config.config_exception import ConfigException  # noqa: E402

__all__ = ["COMPONENT", "KubeCluster", "open_cluster", "reason_for_status", "to_cluster_error"]

COMPONENT = "canary-responder"  # reportingComponent / source.component of our Events
_MERGE_PATCH: Mapping[str, Any] = {"_content_type": "application/merge-patch+json"}
_EVENT_MESSAGE_LIMIT = 1024
_T = TypeVar("_T")

_STATUS_REASONS: Mapping[int, FailureReason] = {
    400: FailureReason.INVALID,
    401: FailureReason.UNAUTHORIZED,
    403: FailureReason.FORBIDDEN,
    404: FailureReason.NOT_FOUND,
    408: FailureReason.TIMEOUT,
    409: FailureReason.CONFLICT,
    410: FailureReason.NOT_FOUND,
    422: FailureReason.INVALID,
    429: FailureReason.SERVER_ERROR,  # throttled (API priority and fairness): retry with backoff
}


def reason_for_status(status: int) -> FailureReason:
    """Classify an HTTP status of the Kubernetes API (5xx and 429 retryable; other 4xx permanent)."""
    if status >= 500:
        return FailureReason.SERVER_ERROR
    if status == 0:
        return FailureReason.CONNECTION
    return _STATUS_REASONS.get(status, FailureReason.INVALID)


def _api_message(exc: ApiException) -> str:
    """The ``message`` of the Kubernetes Status body, else the HTTP reason phrase."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or "")


def _status_message(body: bytes) -> str:
    try:
        found = json.loads(body) if body else {}
    except ValueError:
        return ""
    return str(found.get("message") or "") if isinstance(found, dict) else ""


def to_cluster_error(exc: BaseException, *, what: str) -> ClusterError:
    """Translate a failure of the client library into the project's own error."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        return ClusterError(reason_for_status(status), f"{what}: HTTP {status}: {_api_message(exc)}", status=status)
    if isinstance(exc, TimeoutError):  # before OSError and aiohttp errors: ServerTimeoutError is both
        return ClusterError(FailureReason.TIMEOUT, f"{what}: timed out")
    return ClusterError(FailureReason.CONNECTION, f"{what}: {type(exc).__name__}: {exc}")


_LIBRARY_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)


def _deployment_view(obj: client.V1Deployment) -> DeploymentView:
    meta = obj.metadata
    containers = obj.spec.template.spec.containers if obj.spec and obj.spec.template.spec else []
    replicas = obj.spec.replicas if obj.spec and obj.spec.replicas is not None else 1  # the API's default
    return DeploymentView(
        namespace=meta.namespace or "",
        name=meta.name or "",
        labels=dict(meta.labels or {}),
        annotations=dict(meta.annotations or {}),
        replicas=replicas,
        resource_version=meta.resource_version or "",
        images=tuple(c.image or "" for c in containers or []),
        ready_replicas=(obj.status.ready_replicas or 0) if obj.status else 0,
        selector=label_selector(obj.spec.selector if obj.spec else None),
    )


def label_selector(selector: client.V1LabelSelector | None) -> str:
    """A LabelSelector in the API's string form (``app=checkout,track in (canary)``); "" when it selects nothing
    expressible (no selector, or an operator this does not know): the caller then lists no pods at all."""
    if selector is None:
        return ""
    terms = [f"{key}={value}" for key, value in sorted((selector.match_labels or {}).items())]
    for expression in selector.match_expressions or []:
        values = ",".join(sorted(expression.values or []))
        term = {
            "In": f"{expression.key} in ({values})",
            "NotIn": f"{expression.key} notin ({values})",
            "Exists": expression.key,
            "DoesNotExist": f"!{expression.key}",
        }.get(expression.operator)
        if term is None:
            return ""
        terms.append(term)
    return ",".join(terms)


def _stamp(moment: Any) -> str | None:
    if isinstance(moment, datetime.datetime):
        return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    return str(moment) if moment else None


def _container_view(name: str, status: client.V1ContainerStatus | None) -> ContainerView:
    if status is None:
        return ContainerView(name=name)
    state, last = status.state, status.last_state
    ended = (last.terminated if last else None) or (state.terminated if state else None)
    return ContainerView(
        name=name,
        ready=bool(status.ready),
        restarts=status.restart_count or 0,
        waiting=(state.waiting.reason if state and state.waiting else None),
        last_termination=(
            Termination(reason=ended.reason, exit_code=ended.exit_code, finished_at=_stamp(ended.finished_at))
            if ended
            else None
        ),
    )


def _pod_view(pod: client.V1Pod) -> PodView:
    meta, status = pod.metadata, pod.status
    statuses = {s.name: s for s in (status.container_statuses if status else None) or []}
    containers = pod.spec.containers if pod.spec else []
    conditions = (status.conditions if status else None) or []
    return PodView(
        namespace=meta.namespace or "",
        name=meta.name or "",
        phase=(status.phase if status else None) or "Unknown",
        ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
        containers=tuple(_container_view(c.name, statuses.get(c.name)) for c in containers or []),
        owners=tuple(f"{o.kind}/{o.name}" for o in meta.owner_references or []),
    )


def _event_view(event: client.CoreV1Event) -> EventView:
    series = event.series
    last = event.last_timestamp or (series.last_observed_time if series else None) or event.event_time
    return EventView(
        type=event.type or "",
        reason=event.reason or "",
        message=event.message or "",
        count=event.count or (series.count if series else None) or 1,
        last_seen=_stamp(last or event.first_timestamp),
    )


def _object_view(obj: Any, *, namespace: str, name: str) -> ObjectView:
    """The custom-objects API answers plain JSON (a dict), whatever the kind."""
    body = obj if isinstance(obj, dict) else {}
    meta = body.get("metadata") or {}
    return ObjectView(
        namespace=str(meta.get("namespace") or namespace),
        name=str(meta.get("name") or name),
        body=body,
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def _scale_view(obj: client.V1Scale, *, namespace: str, name: str) -> ScaleView:
    replicas = obj.spec.replicas if obj.spec and obj.spec.replicas is not None else 0
    return ScaleView(
        namespace=obj.metadata.namespace or namespace,
        name=obj.metadata.name or name,
        replicas=replicas,
        resource_version=obj.metadata.resource_version or "",
    )


def _precondition(resource_version: str) -> dict[str, Any]:
    return {"resourceVersion": resource_version} if resource_version else {}


def _event_body(
    deployment: DeploymentView, *, reason: str, message: str, warning: bool, instance: str
) -> client.CoreV1Event:
    """A core/v1 Event on the Deployment, named the way client-go names them (``<object>.<hex nanos>``)."""
    now = datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0)  # metav1.Time has whole seconds
    involved = client.V1ObjectReference(
        api_version="apps/v1",
        kind="Deployment",
        namespace=deployment.namespace,
        name=deployment.name,
        resource_version=deployment.resource_version or None,
    )
    metadata = client.V1ObjectMeta(name=f"{deployment.name}.{time.time_ns():x}", namespace=deployment.namespace)
    return client.CoreV1Event(
        api_version="v1",
        kind="Event",
        metadata=metadata,
        involved_object=involved,
        reason=reason,
        message=message[:_EVENT_MESSAGE_LIMIT],
        type="Warning" if warning else "Normal",
        source=client.V1EventSource(component=COMPONENT, host=instance),
        reporting_component=COMPONENT,
        reporting_instance=instance,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )


class KubeCluster:
    """The cluster actions the rollback executor needs, over one ``kubernetes_asyncio`` ApiClient."""

    def __init__(self, api_client: client.ApiClient, *, request_timeout_s: float = 5.0, instance: str = "") -> None:
        self._api = api_client
        self._timeout = request_timeout_s
        self._instance = instance or socket.gethostname()
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    def api_client(self) -> client.ApiClient:
        """The underlying client, for features that use ``kubernetes_asyncio`` directly (leader election)."""
        return self._api

    def name_client(self, who: str) -> None:
        """Say who calls in the User-Agent (the API server's audit log then tells which replica changed what)."""
        self._api.user_agent = f"canary-responder/{__version__} ({who})"

    async def _call(self, what: str, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except _LIBRARY_ERRORS as exc:
            raise to_cluster_error(exc, what=what) from exc

    async def get_deployment(self, namespace: str, name: str) -> DeploymentView:
        call = self._apps.read_namespaced_deployment(name, namespace, _request_timeout=self._timeout)
        return _deployment_view(await self._call(f"get deployment {namespace}/{name}", call))

    async def get_object(self, api: Api, namespace: str, name: str) -> ObjectView:
        """Any namespaced object, through the custom-objects API (its paths are the same for every API group, so
        an Ingress, an HTTPRoute and a VirtualService are read alike)."""
        call = self._custom.get_namespaced_custom_object(
            api.group, api.version, namespace, api.plural, name, _request_timeout=self._timeout
        )
        found = await self._call(f"get {api.plural} {namespace}/{name}", call)
        return _object_view(found, namespace=namespace, name=name)

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
        """A JSON merge patch carrying ``metadata.resourceVersion``: CONFLICT when the object changed since."""
        metadata = {**dict(patch.get("metadata") or {}), **_precondition(resource_version)}
        body = {**patch, "metadata": metadata}
        if subresource not in (None, "status"):
            raise ValueError(f"no patch of the {subresource} subresource of custom objects")
        method = self._custom.patch_namespaced_custom_object
        if subresource == "status":
            method = self._custom.patch_namespaced_custom_object_status
        call = method(
            api.group, api.version, namespace, api.plural, name, body, _request_timeout=self._timeout, **_MERGE_PATCH
        )
        where = f"{api.plural}/status" if subresource else api.plural
        patched = await self._call(f"patch {where} {namespace}/{name}", call)
        return _object_view(patched, namespace=namespace, name=name)

    async def set_deployment_annotations(
        self, namespace: str, name: str, *, annotations: Mapping[str, str | None], resource_version: str
    ) -> DeploymentView:
        """Merge-patch the Deployment's annotations, failing with CONFLICT on a stale resource_version."""
        body = {"metadata": {**_precondition(resource_version), "annotations": dict(annotations)}}
        call = self._apps.patch_namespaced_deployment(
            name, namespace, body, _request_timeout=self._timeout, **_MERGE_PATCH
        )
        return _deployment_view(await self._call(f"annotate deployment {namespace}/{name}", call))

    async def get_scale(self, namespace: str, name: str) -> ScaleView:
        call = self._apps.read_namespaced_deployment_scale(name, namespace, _request_timeout=self._timeout)
        scale = await self._call(f"get scale of deployment {namespace}/{name}", call)
        return _scale_view(scale, namespace=namespace, name=name)

    async def set_replicas(self, namespace: str, name: str, *, replicas: int, resource_version: str) -> ScaleView:
        """Patch the Deployment's /scale subresource, failing with CONFLICT on a stale resource_version."""
        body = {"metadata": _precondition(resource_version), "spec": {"replicas": replicas}}
        call = self._apps.patch_namespaced_deployment_scale(
            name, namespace, body, _request_timeout=self._timeout, **_MERGE_PATCH
        )
        scale = await self._call(f"scale deployment {namespace}/{name}", call)
        return _scale_view(scale, namespace=namespace, name=name)

    async def emit_event(self, deployment: DeploymentView, *, reason: str, message: str, warning: bool = True) -> None:
        body = _event_body(deployment, reason=reason, message=message, warning=warning, instance=self._instance)
        call = self._core.create_namespaced_event(deployment.namespace, body, _request_timeout=self._timeout)
        await self._call(f"create event on deployment {deployment.namespace}/{deployment.name}", call)

    async def list_pods(self, namespace: str, *, selector: str) -> list[PodView]:
        call = self._core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=self._timeout)
        found = await self._call(f"list pods in {namespace} ({selector})", call)
        return [_pod_view(pod) for pod in found.items or []]

    async def read_log(
        self, namespace: str, pod: str, *, container: str, tail_lines: int, limit_bytes: int, previous: bool = False
    ) -> str:
        """Read raw bytes: the client would otherwise decode strictly (a multi-byte character cut by limitBytes
        raises) and even parse a log that happens to be valid JSON."""
        what = f"read {'previous ' if previous else ''}log of {namespace}/{pod}/{container}"
        call = self._core.read_namespaced_pod_log(
            pod,
            namespace,
            container=container,
            tail_lines=tail_lines,
            limit_bytes=limit_bytes,
            previous=previous,
            _preload_content=False,
            _request_timeout=self._timeout,
        )
        # With _preload_content=False the library hands over the raw aiohttp response (its stubs say str).
        response = cast(aiohttp.ClientResponse, await self._call(what, call))
        try:
            data: bytes = await self._call(what, response.read())
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise ClusterError(
                reason_for_status(response.status),
                f"{what}: HTTP {response.status}: {_status_message(data) or response.reason or ''}",
                status=response.status,
            )
        return data[:limit_bytes].decode("utf-8", errors="replace")

    async def list_events(self, namespace: str, *, kind: str, name: str) -> list[EventView]:
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        call = self._core.list_namespaced_event(namespace, field_selector=selector, _request_timeout=self._timeout)
        found = await self._call(f"list events of {kind} {namespace}/{name}", call)
        return [_event_view(event) for event in found.items or []]

    async def ping(self) -> None:
        """Cheap reachability check for /readyz: the API server's /version."""
        await self._call("get /version", client.VersionApi(self._api).get_code(_request_timeout=self._timeout))

    async def close(self) -> None:
        await self._api.close()


async def _load_configuration(
    *, host: str | None, kubeconfig: str | None, context: str | None, in_cluster: bool
) -> client.Configuration:
    configuration = client.Configuration()
    if host is not None:
        configuration.host = host
    elif in_cluster:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:  # kubeconfig=None lets the library use $KUBECONFIG or ~/.kube/config
        await config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration, persist_config=False
        )
    return configuration


async def open_cluster(
    *,
    host: str | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    in_cluster: bool = False,
    request_timeout_s: float = 5.0,
    token: str | None = None,
) -> KubeCluster:
    """Build a :class:`KubeCluster`: ``host`` (an explicit API URL, e.g. the emulator's) wins, then the in-cluster
    service account when ``in_cluster``, else the kubeconfig (``kubeconfig`` or the default) and ``context``.

    Raises ``ClusterError(INVALID)`` when the configuration cannot be loaded.
    """
    try:
        configuration = await _load_configuration(
            host=host, kubeconfig=kubeconfig, context=context, in_cluster=in_cluster
        )
    except (ConfigException, OSError, ValueError) as exc:
        raise ClusterError(FailureReason.INVALID, f"cannot load the Kubernetes configuration: {exc}") from exc
    if token is not None:
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
    cluster = KubeCluster(client.ApiClient(configuration), request_timeout_s=request_timeout_s)
    cluster.name_client(socket.gethostname())
    return cluster
