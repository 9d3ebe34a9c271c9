"""FakeCluster: the in-process fake of :class:`responder.ports.ClusterPort`, over plain dicts.

This is the httpx ``MockTransport`` idea applied to our one Kubernetes seam: engine and executor tests (and
hypothesis stateful tests that run thousands of rollbacks) swap the port for this fake instead of patching
anything. No network, no sleeps, no randomness: the same calls always give the same answers in the same order.
The loopback emulator (:mod:`responder.testing.emulator`) stays for the Kubernetes adapter's own tests and for
end-to-end runs, where the real client and real HTTP matter.

What it models, and only that:

- Deployments (labels, annotations, replicas, ready replicas, images), Ingresses (annotations) and HTTPRoutes
  (``spec.rules`` as plain JSON), stamped with a ``resourceVersion`` from one global counter that every write
  bumps (a Deployment and its ``/scale`` share one, as in the real API);
- optimistic concurrency: every ``set_*`` takes the ``resource_version`` its caller read and fails with
  CONFLICT (409) when it is stale; an empty one is unconditional, as in the adapter; a missing object is
  NOT_FOUND (404);
- pods: ``set_replicas`` makes the new replicas ready at once, unless the Deployment was added (or marked) with
  ``ready=False``: then its ready count never grows until :meth:`FakeCluster.set_ready`;
- faults: :meth:`FakeCluster.fail` makes the next calls of one method raise a :class:`ClusterError`; with
  ``land=True`` the change is applied first (an uncertain outcome: it landed, the caller saw a failure);
- a hook, ``before_call``, awaited at the start of every call: a test pauses a call there, changes the state
  behind the caller's back, or raises its own ``BaseException`` to simulate a crash between two calls;
- pods for the evidence step (:meth:`FakeCluster.add_pod`): listed by an equality label selector, their logs
  served as the API does (``tail_lines`` first, then at most ``limit_bytes`` from their start; a previous log
  never set is a 400), their Events by name;
- logs: ``calls`` (every call that got past the hook), ``mutations`` (every write, landed or not, with a deep
  copy of the whole state right after it) and ``events``.

Concurrency: apart from ``before_call``, no call awaits anything, so each call reads, checks and changes the state
atomically, as one API request would; calls run concurrently (``asyncio.gather``) interleave only at the hook.
Values handed out are deep copies (the views are frozen, their mappings are fresh dicts), and values taken in
are copied too, so neither side can alias the other's state.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from responder.core.model import (
    DeploymentView,
    EventView,
    FailureReason,
    ObjectView,
    PodView,
    ScaleView,
    TargetRef,
    TrafficRef,
)
from responder.ports import ClusterError
from responder.traffic import Api, merged

__all__ = [
    "CANARY_ANNOTATION",
    "canaries",
    "CANARY_WEIGHT_ANNOTATION",
    "BeforeCall",
    "FakeCluster",
    "FakeEvent",
    "FakeFault",
    "FakeMutation",
    "State",
    "STATUS_OF",
    "state_in",
]

CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
CANARY_WEIGHT_ANNOTATION = "nginx.ingress.kubernetes.io/canary-weight"

Key = tuple[str, str]  # (namespace, name)
State = dict[str, dict[Key, dict[str, Any]]]  # "deployments" | "ingresses" | "httproutes" -> key -> object
BeforeCall = Callable[[str, tuple[Any, ...]], Awaitable[None]]
_T = TypeVar("_T")

# The HTTP status the Kubernetes adapter attaches to each reason (None: no HTTP answer at all).
STATUS_OF: Mapping[FailureReason, int | None] = {
    FailureReason.SERVER_ERROR: 500,
    FailureReason.TIMEOUT: None,
    FailureReason.CONNECTION: None,
    FailureReason.CONFLICT: 409,
    FailureReason.FORBIDDEN: 403,
    FailureReason.UNAUTHORIZED: 401,
    FailureReason.NOT_FOUND: 404,
    FailureReason.INVALID: 422,
}

_READS = frozenset(
    {"get_deployment", "get_object", "get_scale", "list_pods", "read_log", "list_events", "ping", "close"}
)
_WRITES = frozenset({"patch_object", "set_deployment_annotations", "set_replicas", "emit_event"})
_PLURAL = {"deployments": "deployments.apps", "ingresses": "ingresses.networking.k8s.io", "httproutes": "httproutes"}
_TYPED = frozenset({"ingresses", "httproutes"})  # kept in their own shape; any other kind as its raw JSON body


class FakeMutation(NamedTuple):
    """One write, as the fake received it: ``args`` are its keyword arguments (copied); ``snapshot`` is the whole
    state right after it (unchanged from before when it did not land)."""

    method: str
    namespace: str
    name: str
    args: dict[str, Any]
    landed: bool
    snapshot: State

    def state_of(self, namespace: str, app: str) -> dict[str, Any]:
        """:func:`state_in` this mutation's snapshot."""
        return state_in(self.snapshot, namespace, app)


class FakeEvent(NamedTuple):
    namespace: str
    deployment: str
    reason: str
    message: str


@dataclass(kw_only=True)
class FakeFault:
    """The next ``times`` calls (None: all) of ``method`` raise ``reason``; ``land``: after applying the change."""

    method: str
    reason: FailureReason
    times: int | None
    land: bool
    hits: int = 0

    @property
    def active(self) -> bool:
        return self.times is None or self.hits < self.times

    def error(self) -> ClusterError:
        where = " after the change landed" if self.land else ""
        message = f"injected {self.reason.value} on {self.method}{where}"
        return ClusterError(self.reason, message, status=STATUS_OF.get(self.reason))


def state_in(snapshot: State, namespace: str, app: str) -> dict[str, Any]:
    """What matters for invariants about ``app`` in ``namespace``: the canary's replicas, its Ingress's canary
    annotation, the rules of the HTTPRoute ``app``, and the stable Deployment's replicas (None: no such object)."""
    canary = snapshot["deployments"].get((namespace, f"{app}-canary"))
    ingress = snapshot["ingresses"].get((namespace, f"{app}-canary"))
    route = snapshot["httproutes"].get((namespace, app))
    stable = snapshot["deployments"].get((namespace, app))
    return {
        "replicas": canary["replicas"] if canary else None,
        "canary": ingress["annotations"].get(CANARY_ANNOTATION) if ingress else None,
        "rules": copy.deepcopy(route["rules"]) if route else None,
        "stable_replicas": stable["replicas"] if stable else None,
    }


def canaries(*apps: str, namespace: str = "shop", replicas: int = 3) -> FakeCluster:
    """A fake cluster with a stable and a canary Deployment (with its canary Ingress) for each app."""
    fake = FakeCluster()
    for app in apps:
        fake.add_stable(namespace, app)
        fake.add_canary(namespace, app, replicas=replicas)
    return fake


class FakeCluster:
    """An in-memory :class:`responder.ports.ClusterPort` (see the module docstring)."""

    def __init__(self, *, before_call: BeforeCall | None = None) -> None:
        self.before_call = before_call
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.mutations: list[FakeMutation] = []
        self.events: list[FakeEvent] = []
        self.closed = False
        self._version = 0
        self._state: State = {"deployments": {}, "ingresses": {}, "httproutes": {}}
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name) -> raw body
        self._pods: dict[Key, tuple[dict[str, str], PodView]] = {}  # -> (labels, view)
        self._logs: dict[tuple[str, str, str, bool], str] = {}  # (namespace, pod, container, previous) -> text
        self._pod_events: dict[Key, list[EventView]] = {}
        self._faults: list[FakeFault] = []

    # --- seeding and other writers (not logged: only the port's callers are) ---------------------------

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        replicas: int = 1,
        images: Iterable[str] = (),
        ready: bool = True,
    ) -> DeploymentView:
        obj = {
            "labels": dict(labels),
            "annotations": dict(annotations or {}),
            "replicas": replicas,
            "ready_replicas": replicas if ready else 0,
            "images": list(images),
            "ready": ready,
        }
        self._put("deployments", namespace, name, obj)
        return self._deployment_view(namespace, name)

    def add_ingress(self, namespace: str, name: str, *, annotations: Mapping[str, str] | None = None) -> ObjectView:
        self._put("ingresses", namespace, name, {"annotations": dict(annotations or {})})
        return self._object_view("ingresses", namespace, name)

    def add_httproute(self, namespace: str, name: str, *, rules: Iterable[Mapping[str, Any]]) -> ObjectView:
        self._put("httproutes", namespace, name, {"rules": copy.deepcopy([dict(r) for r in rules])})
        return self._object_view("httproutes", namespace, name)

    def add_canary(
        self,
        namespace: str,
        app: str,
        *,
        replicas: int = 2,
        ingress: bool = True,
        route: bool = False,
        marker: tuple[str, str] = ("version", "canary"),
        ready: bool = True,
    ) -> TargetRef:
        """The canary ``{app}-canary``: its Deployment, its NGINX canary Ingress at 10 % (``ingress``) and the
        HTTPRoute ``app`` sending it 10 of 100 (``route``); returns the target that addresses them."""
        canary = f"{app}-canary"
        labels = {"app": app, marker[0]: marker[1]}
        self.add_deployment(namespace, canary, labels=labels, replicas=replicas, images=[f"{app}:1.5.0"], ready=ready)
        if ingress:
            self.add_ingress(namespace, canary, annotations={CANARY_ANNOTATION: "true", CANARY_WEIGHT_ANNOTATION: "10"})
        if route:
            refs = [{"name": app, "port": 80, "weight": 90}, {"name": canary, "port": 80, "weight": 10}]
            self.add_httproute(namespace, app, rules=[{"backendRefs": refs}])
        traffic = [TrafficRef("nginx", canary)] if ingress else []
        if route:
            traffic.append(TrafficRef("httproute", app, (("canary_backend", canary),)))
        return TargetRef(namespace=namespace, deployment=canary, traffic=tuple(traffic))

    def add_stable(self, namespace: str, app: str, *, replicas: int = 4) -> TargetRef:
        """The stable Deployment ``app`` (``version=stable``); returns a target naming it (one to be refused)."""
        labels = {"app": app, "version": "stable"}
        self.add_deployment(namespace, app, labels=labels, replicas=replicas, images=[f"{app}:1.4.2"])
        return TargetRef(namespace=namespace, deployment=app)

    def add_pod(
        self,
        namespace: str,
        pod: PodView,
        *,
        labels: Mapping[str, str],
        logs: Mapping[str, str] | None = None,
        previous_logs: Mapping[str, str] | None = None,
        events: Iterable[EventView] = (),
    ) -> None:
        """A pod with its labels, its containers' logs (by container name) and its Events."""
        key = (namespace, pod.name)
        self._pods[key] = (dict(labels), pod)
        for container, text in (logs or {}).items():
            self._logs[(namespace, pod.name, container, False)] = text
        for container, text in (previous_logs or {}).items():
            self._logs[(namespace, pod.name, container, True)] = text
        self._pod_events[key] = list(events)

    def edit_deployment(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        replicas: int | None = None,
        images: Iterable[str] | None = None,
    ) -> None:
        """Another writer replaces the given fields (none: only the resourceVersion moves on)."""
        obj = self._get("deployments", namespace, name)
        if labels is not None:
            obj["labels"] = dict(labels)
        if annotations is not None:
            obj["annotations"] = dict(annotations)
        if images is not None:
            obj["images"] = list(images)
        if replicas is not None:
            _scale(obj, replicas)
        self._bump(obj)

    def edit_ingress(self, namespace: str, name: str, *, annotations: Mapping[str, str | None] | None = None) -> None:
        """Another writer merges annotations (``None`` deletes one); none: only the resourceVersion moves on."""
        obj = self._get("ingresses", namespace, name)
        _merge(obj["annotations"], annotations or {})
        self._bump(obj)

    def edit_httproute(self, namespace: str, name: str, *, rules: Iterable[Mapping[str, Any]] | None = None) -> None:
        """Another writer replaces the rules; none: only the resourceVersion moves on."""
        obj = self._get("httproutes", namespace, name)
        if rules is not None:
            obj["rules"] = copy.deepcopy([dict(r) for r in rules])
        self._bump(obj)

    def set_ready(self, namespace: str, name: str, ready: bool = True) -> None:
        """Pods become ready (all replicas at once, and from now on) or stop becoming ready (a status write)."""
        obj = self._get("deployments", namespace, name)
        obj["ready"] = ready
        if ready:
            obj["ready_replicas"] = obj["replicas"]
        self._bump(obj)

    # --- faults ------------------------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        reason: FailureReason = FailureReason.SERVER_ERROR,
        times: int = 1,
        *,
        land: bool = False,
    ) -> FakeFault:
        """The next ``times`` calls of ``method`` raise ``reason``; with ``land``, after the change was applied.

        Faults of one method apply in the order they were added. With ``land=True`` the call does everything it
        would (checks included: a stale version still changes nothing) and then raises the injected error.
        """
        if times < 1:
            raise ValueError("times must be at least 1 (use fail_forever for no limit)")
        return self._add_fault(FakeFault(method=method, reason=reason, times=times, land=land))

    def fail_forever(
        self, method: str, reason: FailureReason = FailureReason.SERVER_ERROR, *, land: bool = False
    ) -> FakeFault:
        """Every call of ``method`` raises ``reason`` until :meth:`heal`."""
        return self._add_fault(FakeFault(method=method, reason=reason, times=None, land=land))

    def heal(self, method: str | None = None) -> None:
        """Forget the injected faults (of one method, or all)."""
        self._faults = [f for f in self._faults if method is not None and f.method != method]

    def _add_fault(self, fault: FakeFault) -> FakeFault:
        if fault.method not in _READS | _WRITES:
            raise ValueError(f"{fault.method!r} is not a ClusterPort method")
        if fault.land and fault.method not in _WRITES:
            raise ValueError(f"land=True needs a method that changes something, not {fault.method!r}")
        self._faults.append(fault)
        return fault

    # --- inspection --------------------------------------------------------------------------------------

    def snapshot(self) -> State:
        """A deep copy of the whole state."""
        return copy.deepcopy(self._state)

    def state_of(self, namespace: str, app: str) -> dict[str, Any]:
        """:func:`state_in` the current state."""
        return state_in(self._state, namespace, app)

    def mutations_of(self, method: str) -> list[FakeMutation]:
        """The writes through one method, landed or not, in order."""
        return [m for m in self.mutations if m.method == method]

    def landed(self, method: str | None = None) -> list[FakeMutation]:
        """The writes that took effect (of one method, or all), in order."""
        return [m for m in self.mutations if m.landed and (method is None or m.method == method)]

    # --- the port ----------------------------------------------------------------------------------------

    async def get_deployment(self, namespace: str, name: str) -> DeploymentView:
        await self._enter("get_deployment", (namespace, name))
        return self._deployment_view(namespace, name)

    async def get_object(self, api: Api, namespace: str, name: str) -> ObjectView:
        await self._enter("get_object", (api.plural, namespace, name))
        return self._object_view(api.plural, namespace, name)

    async def get_scale(self, namespace: str, name: str) -> ScaleView:
        await self._enter("get_scale", (namespace, name))
        return self._scale_view(namespace, name)

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
        """A JSON merge patch with the resourceVersion precondition (CONFLICT when stale), as the API applies it
        (``subresource`` is accepted and patches the same stored object)."""

        def change() -> ObjectView:
            body = merged(self._object_body(api.plural, namespace, name, resource_version=resource_version), patch)
            self._store_body(api.plural, namespace, name, body)
            return self._object_view(api.plural, namespace, name)

        args = {"plural": api.plural, "patch": copy.deepcopy(dict(patch)), "resource_version": resource_version}
        return await self._write("patch_object", namespace, name, args, change)

    async def set_deployment_annotations(
        self, namespace: str, name: str, *, annotations: Mapping[str, str | None], resource_version: str
    ) -> DeploymentView:
        def change() -> DeploymentView:
            obj = self._checked("deployments", namespace, name, resource_version)
            _merge(obj["annotations"], annotations)
            self._bump(obj)
            return self._deployment_view(namespace, name)

        args = {"annotations": dict(annotations), "resource_version": resource_version}
        return await self._write("set_deployment_annotations", namespace, name, args, change)

    async def set_replicas(self, namespace: str, name: str, *, replicas: int, resource_version: str) -> ScaleView:
        def change() -> ScaleView:
            obj = self._checked("deployments", namespace, name, resource_version)
            if replicas < 0:
                raise ClusterError(FailureReason.INVALID, f"spec.replicas must be >= 0, got {replicas}", status=422)
            _scale(obj, replicas)
            self._bump(obj)
            return self._scale_view(namespace, name)

        args = {"replicas": replicas, "resource_version": resource_version}
        return await self._write("set_replicas", namespace, name, args, change)

    async def emit_event(self, deployment: DeploymentView, *, reason: str, message: str, warning: bool = True) -> None:
        def change() -> None:
            self.events.append(FakeEvent(deployment.namespace, deployment.name, reason, message))

        args = {"reason": reason, "message": message, "warning": warning}
        call = (deployment, reason, message, warning)
        await self._write("emit_event", deployment.namespace, deployment.name, args, change, call=call)

    async def list_pods(self, namespace: str, *, selector: str) -> list[PodView]:
        await self._enter("list_pods", (namespace, selector))
        wanted = _equalities(selector)
        pods = self._pods.items()
        return [view for (ns, _), (labels, view) in pods if ns == namespace and wanted.items() <= labels.items()]

    async def read_log(
        self, namespace: str, pod: str, *, container: str, tail_lines: int, limit_bytes: int, previous: bool = False
    ) -> str:
        await self._enter("read_log", (namespace, pod, container, tail_lines, limit_bytes, previous))
        if (namespace, pod) not in self._pods:
            raise ClusterError(FailureReason.NOT_FOUND, f'pods "{pod}" not found', status=404)
        text = self._logs.get((namespace, pod, container, previous))
        if text is None and previous:
            message = f'previous terminated container "{container}" in pod "{pod}" not found'
            raise ClusterError(FailureReason.INVALID, message, status=400)
        lines = (text or "").splitlines(keepends=True)[-tail_lines:]
        return "".join(lines).encode()[:limit_bytes].decode("utf-8", errors="replace")

    async def list_events(self, namespace: str, *, kind: str, name: str) -> list[EventView]:
        await self._enter("list_events", (namespace, kind, name))
        return list(self._pod_events.get((namespace, name), [])) if kind == "Pod" else []

    async def ping(self) -> None:
        await self._enter("ping", ())

    async def close(self) -> None:
        await self._enter("close", ())
        self.closed = True

    # --- internals ---------------------------------------------------------------------------------------

    async def _enter(self, method: str, call: tuple[Any, ...]) -> FakeFault | None:
        """The hook, the call log, and the fault due (raised here unless it lands a change first)."""
        if self.before_call is not None:
            await self.before_call(method, call)
        self.calls.append((method, call))
        fault = next((f for f in self._faults if f.method == method and f.active), None)
        if fault is None:
            return None
        fault.hits += 1
        if method not in _WRITES:
            raise fault.error()
        return fault  # a write decides itself: before its change, or (land) after it

    async def _write(
        self,
        method: str,
        namespace: str,
        name: str,
        args: dict[str, Any],
        change: Callable[[], _T],
        *,
        call: tuple[Any, ...] | None = None,
    ) -> _T:
        fault = await self._enter(method, call or (namespace, name, *args.values()))
        if fault is not None and not fault.land:
            self._log(method, namespace, name, args, landed=False)
            raise fault.error()
        try:
            result = change()
        except ClusterError as exc:
            self._log(method, namespace, name, args, landed=False)
            if fault is not None:
                raise fault.error() from exc
            raise
        self._log(method, namespace, name, args, landed=True)
        if fault is not None:
            raise fault.error()
        return result

    def _log(self, method: str, namespace: str, name: str, args: dict[str, Any], *, landed: bool) -> None:
        self.mutations.append(FakeMutation(method, namespace, name, copy.deepcopy(args), landed, self.snapshot()))

    def _bump(self, obj: dict[str, Any]) -> None:
        self._version += 1
        obj["resourceVersion"] = str(self._version)

    def _put(self, kind: str, namespace: str, name: str, obj: dict[str, Any]) -> None:
        self._bump(obj)
        self._state[kind][(namespace, name)] = obj

    def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self._state[kind][(namespace, name)]
        except KeyError:
            message = f'{_PLURAL[kind]} "{name}" not found in namespace {namespace!r}'
            raise ClusterError(FailureReason.NOT_FOUND, message, status=404) from None

    def _checked(self, kind: str, namespace: str, name: str, resource_version: str) -> dict[str, Any]:
        """The object to change, if ``resource_version`` is current (or empty: unconditional)."""
        obj = self._get(kind, namespace, name)
        if resource_version and resource_version != obj["resourceVersion"]:
            message = (
                f'Operation cannot be fulfilled on {_PLURAL[kind]} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again"
            )
            raise ClusterError(FailureReason.CONFLICT, message, status=409)
        return obj

    def _deployment_view(self, namespace: str, name: str) -> DeploymentView:
        obj = self._get("deployments", namespace, name)
        return DeploymentView(
            namespace=namespace,
            name=name,
            labels=dict(obj["labels"]),
            annotations=dict(obj["annotations"]),
            replicas=obj["replicas"],
            resource_version=obj["resourceVersion"],
            images=tuple(obj["images"]),
            ready_replicas=obj["ready_replicas"],
            selector=",".join(f"{k}={v}" for k, v in sorted(obj["labels"].items())),
        )

    def _object_body(
        self, plural: str, namespace: str, name: str, *, resource_version: str | None = None
    ) -> dict[str, Any]:
        """The object as the API would serve it (checking ``resource_version`` when given)."""
        if plural not in _TYPED:
            body = self._objects.get((plural, namespace, name))
            if body is None:
                raise ClusterError(FailureReason.NOT_FOUND, f'{plural} "{name}" not found', status=404)
            current = body["metadata"]["resourceVersion"]
            if resource_version and resource_version != current:
                raise ClusterError(
                    FailureReason.CONFLICT, f'{plural} "{name}": the object has been modified', status=409
                )
            return copy.deepcopy(body)
        obj = (
            self._checked(plural, namespace, name, resource_version)
            if resource_version is not None
            else self._get(plural, namespace, name)
        )
        meta = {"name": name, "namespace": namespace, "resourceVersion": obj["resourceVersion"]}
        if plural == "ingresses":
            return {"metadata": {**meta, "annotations": dict(obj["annotations"])}}
        return {"metadata": meta, "spec": {"rules": copy.deepcopy(obj["rules"])}}

    def _store_body(self, plural: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        if plural not in _TYPED:
            self._version += 1
            body["metadata"]["resourceVersion"] = str(self._version)
            self._objects[(plural, namespace, name)] = body
            return
        obj = self._get(plural, namespace, name)
        if plural == "ingresses":
            obj["annotations"] = {k: v for k, v in (body.get("metadata", {}).get("annotations") or {}).items()}
        else:
            obj["rules"] = copy.deepcopy((body.get("spec") or {}).get("rules") or [])
        self._bump(obj)

    def _object_view(self, plural: str, namespace: str, name: str) -> ObjectView:
        body = self._object_body(plural, namespace, name)
        return ObjectView(namespace, name, body, body["metadata"]["resourceVersion"])

    def add_object(self, plural: str, namespace: str, name: str, body: Mapping[str, Any]) -> ObjectView:
        """Seed an object of any other kind (a VirtualService ...), as its raw JSON body."""
        stored = copy.deepcopy(dict(body))
        stored.setdefault("metadata", {}).update({"name": name, "namespace": namespace})
        self._store_body(plural, namespace, name, stored)
        return self._object_view(plural, namespace, name)

    def object_body(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return self._object_body(plural, namespace, name)

    def _scale_view(self, namespace: str, name: str) -> ScaleView:
        obj = self._get("deployments", namespace, name)
        return ScaleView(
            namespace=namespace, name=name, replicas=obj["replicas"], resource_version=obj["resourceVersion"]
        )


def _scale(deployment: dict[str, Any], replicas: int) -> None:
    # Ready pods follow at once, or (pods that never become ready) only ever shrink with the replicas.
    deployment["replicas"] = replicas
    ready = deployment["ready_replicas"]
    deployment["ready_replicas"] = replicas if deployment["ready"] else min(ready, replicas)


def _equalities(selector: str) -> dict[str, str]:
    """``a=b,c=d`` as a dict; anything else is refused, as the API refuses a selector it cannot parse."""
    found: dict[str, str] = {}
    for term in filter(None, selector.split(",")):
        key, sep, value = term.partition("=")
        if not sep or not key:
            raise ClusterError(FailureReason.INVALID, f"unsupported label selector term {term!r}", status=400)
        found[key.strip()] = value.strip()
    return found


def _merge(annotations: dict[str, str], patch: Mapping[str, str | None]) -> None:
    """A merge patch of annotations: ``None`` deletes one."""
    for key, value in patch.items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
