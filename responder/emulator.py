"""A Kubernetes API emulator on loopback: kmock's ``KubernetesEmulator`` with the gaps closed.

Owns everything the integration tests and ``canary-responder demo`` need from a fake API server, served over
real HTTP so that the real ``kubernetes_asyncio`` client talks to it unchanged:

- server-managed metadata (``resourceVersion`` from one global counter, ``uid``, ``creationTimestamp``,
  ``generation``) and optimistic concurrency: a PATCH or PUT whose body carries a stale
  ``metadata.resourceVersion`` gets ``409 Conflict``;
- PUT (replace), POST (create, ``409 AlreadyExists`` on a duplicate), DELETE, ``labelSelector`` on lists;
- the ``deployments/scale`` subresource as a real ``autoscaling/v1`` ``Scale``;
- discovery with correct kinds and ``groupVersion: "v1"`` for the core group;
- programmatic faults (status codes, slow responses, dropped connections), either instead of serving a request
  or, with ``after=True``, on the answer to a request that was served (its change landed, but the client sees a
  failure: the "uncertain outcome" of a real timeout), and an ordered log of every mutating request for
  assertions (:attr:`Emulator.mutations`).

Object state lives in kmock's own store (``emu.objects``), so kmock's history assertions keep working. All our
handlers are kmock fallbacks, so a test can still override any endpoint with the kmock DSL.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp.web
import kmock

__all__ = [
    "Emulator",
    "Fault",
    "Mutation",
    "SeedObject",
    "run_emulator",
    "sample_canary_objects",
]

JsonDict = dict[str, Any]

_MUTATING = frozenset({"PATCH", "PUT", "POST", "DELETE"})
_DROPPED = 0  # Mutation.status of a request whose connection was dropped before any response


class _ResourceSpec(NamedTuple):
    kind: str
    singular: str
    subresources: frozenset[str] = frozenset()


# The resources the responder, its leader election and the demo use; all namespaced.
RESOURCES: Mapping[str, _ResourceSpec] = {
    "apps/v1/deployments": _ResourceSpec("Deployment", "deployment", frozenset({"scale", "status"})),
    "networking.k8s.io/v1/ingresses": _ResourceSpec("Ingress", "ingress", frozenset({"status"})),
    "v1/events": _ResourceSpec("Event", "event"),
    "events.k8s.io/v1/events": _ResourceSpec("Event", "event"),
    "coordination.k8s.io/v1/leases": _ResourceSpec("Lease", "lease"),
    "gateway.networking.k8s.io/v1/httproutes": _ResourceSpec("HTTPRoute", "httproute", frozenset({"status"})),
}
_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})
_STATUS_REASONS: Mapping[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class Mutation(NamedTuple):
    """One mutating request as it reached the emulator (whether or not it succeeded).

    ``status`` is how the request was served, so ``ok`` always says whether its change landed. The client got the
    same status, except when an ``after=True`` fault spoiled the answer: then ``answered`` says what it got.
    """

    method: str
    path: str
    kind: str  # the resource's kind ("Deployment" also for /scale); "" for non-Kubernetes paths
    namespace: str | None
    name: str | None
    body: Any
    status: int  # the HTTP status served; 0 while held by a fault, or when the connection was dropped unserved
    at: float = 0.0  # wall-clock time (time.time()) when the answer was ready: the change took effect by then
    answered: int | None = None  # after=True faults: what the client got instead (0: dropped); None: ``status``

    @property
    def ok(self) -> bool:
        """Whether the request was served successfully: its change landed (even if the client never knew)."""
        return 200 <= self.status < 300

    @property
    def landed(self) -> bool:
        """Whether the change took effect, whatever the client was answered (the same as ``ok``)."""
        return self.ok

    @property
    def subresource(self) -> str | None:
        return _parse_path(self.path).subresource


class SeedObject(NamedTuple):
    """An object to pre-load: ``resource`` is ``"group/version/plural"`` (``"v1/events"`` for core)."""

    resource: str
    namespace: str | None
    name: str
    body: JsonDict


@dataclass(kw_only=True)
class Fault:
    """An injected failure for matching requests; the first active matching fault applies, ``times`` times."""

    method: str | None = None
    path_contains: str | None = None
    status: int | None = None
    delay: float = 0.0
    reset: bool = False
    times: int | None = 1  # None: until cleared
    message: str = "injected fault"
    after: bool = False  # serve the request first (its change lands), then apply the fault to the answer
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path


def _k8s_error(status: int, message: str, *, details: JsonDict | None = None) -> Exception:
    reason = _STATUS_REASONS.get(status, "Unknown")
    details = details or {"causes": []}  # never empty: kmock would put a server traceback there
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(base: Mapping[str, Any], patch: Mapping[str, Any]) -> JsonDict:
    """RFC 7386 merge patch (also used for strategic merge): dicts merge recursively, ``None`` deletes."""
    result = dict(copy.deepcopy(base))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge_patch(result[key], value)
        elif isinstance(value, Mapping):
            result[key] = merge_patch({}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise _k8s_error(422, f"invalid JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def _container(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _json_patch_op(doc: Any, op: Mapping[str, Any]) -> None:
    *parents, last = _pointer(str(op.get("path", "")))
    target = _container(doc, parents)
    kind = op.get("op")
    if kind == "test":
        current = target[int(last)] if isinstance(target, list) else target.get(last)
        if current != op.get("value"):
            raise _k8s_error(422, f"JSON patch test failed at {op.get('path')!r}")
    elif kind == "remove":
        del target[int(last) if isinstance(target, list) else last]
    elif kind in ("add", "replace") and isinstance(target, list):
        index = len(target) if last == "-" else int(last)
        if kind == "add":
            target.insert(index, copy.deepcopy(op.get("value")))
        else:
            target[index] = copy.deepcopy(op.get("value"))
    elif kind in ("add", "replace"):
        target[last] = copy.deepcopy(op.get("value"))
    else:
        raise _k8s_error(422, f"unsupported JSON patch operation: {kind!r}")


def json_patch(base: Mapping[str, Any], ops: Iterable[Mapping[str, Any]]) -> JsonDict:
    """RFC 6902 JSON patch, the simple operations (add, replace, remove, test)."""
    doc: JsonDict = copy.deepcopy(dict(base))
    try:
        for op in ops:
            _json_patch_op(doc, op)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise _k8s_error(422, f"JSON patch cannot be applied: {exc!r}") from exc
    return doc


_SELECTOR_TERM = re.compile(r"^\s*(?P<neg>!)?\s*(?P<key>[\w./-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[\w.-]*))?\s*$")


def parse_label_selector(selector: str) -> list[tuple[str, str, str | None]]:
    """Parse ``a=b,c!=d,e,!f`` into (key, op, value) terms; op is one of ``= != exists !exists``."""
    terms: list[tuple[str, str, str | None]] = []
    for raw in filter(None, (part.strip() for part in selector.split(","))):
        match = _SELECTOR_TERM.match(raw)
        if match is None or (match["neg"] and match["op"]):
            raise _k8s_error(400, f"unsupported label selector term: {raw!r}")
        if match["op"]:
            terms.append((match["key"], "!=" if match["op"] == "!=" else "=", match["value"]))
        else:
            terms.append((match["key"], "!exists" if match["neg"] else "exists", None))
    return terms


def labels_match(labels: Mapping[str, str], terms: Iterable[tuple[str, str, str | None]]) -> bool:
    """Whether ``labels`` satisfy every selector term."""
    return all(_term_holds(labels, key=key, op=op, value=value) for key, op, value in terms)


def _term_holds(labels: Mapping[str, str], *, key: str, op: str, value: str | None) -> bool:
    if op == "exists":
        return key in labels
    if op == "!exists":
        return key not in labels
    return (labels.get(key) == value) == (op == "=")


def scale_of(deployment: Mapping[str, Any]) -> JsonDict:
    """The ``autoscaling/v1`` Scale view of a Deployment, as the real ``/scale`` endpoint serves it."""
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    match_labels = spec.get("selector", {}).get("matchLabels", {})
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion") if key in meta},
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            "replicas": deployment.get("status", {}).get("replicas", 0),
            "selector": ",".join(f"{key}={value}" for key, value in sorted(match_labels.items())),
        },
    }


def _scaled(deployment: Mapping[str, Any], replicas: int) -> JsonDict:
    # An instantly converged Deployment controller: status follows spec at once.
    status = dict(deployment.get("status", {}))
    for key in ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas"):
        status[key] = replicas
    return merge_patch(deployment, {"spec": {"replicas": replicas}, "status": status})


def _spec_part(obj: Mapping[str, Any]) -> JsonDict:
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _check_precondition(stored: Mapping[str, Any], wanted: Mapping[str, Any], *, what: str) -> None:
    """Optimistic concurrency: a resourceVersion in the request must equal the stored one."""
    wanted_rv = (wanted.get("metadata") or {}).get("resourceVersion")
    stored_rv = stored.get("metadata", {}).get("resourceVersion")
    if wanted_rv not in (None, "") and wanted_rv != stored_rv:
        message = (
            f"Operation cannot be fulfilled on {what}: the object has been modified; "
            "please apply your changes to the latest version and try again"
        )
        raise _k8s_error(409, message)


class _ParsedPath(NamedTuple):
    resource: str | None
    namespace: str | None
    name: str | None
    subresource: str | None


_PATH = re.compile(
    r"^/(?:api/(?P<cv>[^/]+)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>.+))?$"
)


def _parse_path(path: str) -> _ParsedPath:
    match = _PATH.match(path)
    if match is None:
        return _ParsedPath(None, None, None, None)
    prefix = match["cv"] or f"{match['group']}/{match['version']}"
    return _ParsedPath(f"{prefix}/{match['plural']}", match["ns"], match["name"], match["sub"])


class Emulator(kmock.KubernetesEmulator):
    """A stateful Kubernetes API emulator; serve it with :func:`run_emulator` (or ``kmock.Server``)."""

    def __init__(self) -> None:
        # Our state first: kmock's attrs-generated __init__ calls __attrs_post_init__ at its end.
        self.mutations: list[Mutation] = []
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request, in arrival order
        self._faults: list[Fault] = []
        self._counter = 0
        self._closing = asyncio.Event()
        super().__init__()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for resource, spec in RESOURCES.items():
            self.resources[resource] = kmock.ResourceInfo(
                kind=spec.kind,
                singular=spec.singular,
                namespaced=True,
                verbs=set(_VERBS),
                subresources=set(spec.subresources),
            )
        self.fallback[kmock.method.PUT] << self._serve_replace
        # kubernetes_asyncio asks these with a trailing slash, which kmock's discovery routes do not match.
        # Above the other fallbacks (kmock parses "/api/" as a list request), below any test's own reactions.
        discovery = self**-1000
        discovery["get /version/"] << self._serve_server_version
        discovery["get /api/"] << self._serve_api
        discovery["get /apis/"] << self._serve_apis

    # --- public helpers -------------------------------------------------------------------------------

    def add_fault(
        self,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        status: int | None = None,
        delay: float = 0.0,
        reset: bool = False,
        times: int | None = 1,
        message: str = "injected fault",
        after: bool = False,
    ) -> Fault:
        """Fail matching requests: wait ``delay`` s, then drop the connection (``reset``) or answer ``status``.

        With only ``delay``, the request is served normally after the delay, unless its client went away
        meanwhile: then it is dropped unprocessed (a client timeout never causes a late mutation).
        With ``after=True`` the request is served at once (its change lands, and its :class:`Mutation` records
        the real status) and the fault applies to the answer: wait ``delay``, then drop the connection, answer
        ``status`` instead, or (neither) deliver the real answer late; a client gone meanwhile finds it dropped.
        Note that aiohttp clients transparently retry an idempotent request (GET, PUT, DELETE) once when a
        pooled keep-alive connection is dropped: to make such a request fail, use ``times=2``.
        """
        fault = Fault(
            method=method,
            path_contains=path_contains,
            status=status,
            delay=delay,
            reset=reset,
            times=times,
            message=message,
            after=after,
        )
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def put_object(self, resource: str, namespace: str | None, name: str, body: Mapping[str, Any]) -> JsonDict:
        """Store an object directly (no HTTP, no mutation record), stamping server-managed metadata."""
        key = (kmock.resource(resource), namespace, name)
        previous = self._objects[key].raw if key in self._objects and not self._objects[key].deleted else None
        obj = self._stamp(resource, namespace, name, body, previous=previous)
        if previous is None:
            self._objects[key] = obj
        else:
            self._objects[key].history.append(obj)
        return copy.deepcopy(obj)

    def get_object(self, resource: str, namespace: str | None, name: str) -> JsonDict:
        """The current state of an object; ``KeyError`` if absent or deleted."""
        key = (kmock.resource(resource), namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            raise KeyError(f"{resource} {namespace}/{name}")
        return copy.deepcopy(self._live_raw(key))

    def seed(self, objects: Iterable[SeedObject]) -> None:
        for item in objects:
            self.put_object(item.resource, item.namespace, item.name, item.body)

    def mutations_of(self, kind: str, name: str, *, namespace: str | None = None) -> list[Mutation]:
        """The mutating requests that addressed one object (including its subresources)."""
        return [
            m
            for m in self.mutations
            if m.kind == kind and m.name == name and (namespace is None or m.namespace == namespace)
        ]

    def close(self) -> None:
        """Release requests held by ``delay`` faults, so that the server can shut down at once."""
        self._closing.set()

    # --- request entry point --------------------------------------------------------------------------

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        # kmock matches every request against its whole request history (O(history) per request), so a
        # long-running emulator slows down linearly. ``mutations`` is this emulator's record; keep kmock's
        # history to the request in hand. No await happens between kmock appending it and this line.
        self._requests[:] = [request]
        for payload in self._payloads:
            payload._requests.clear()
        method = str(request.method.value).upper()
        path = str(request.url.path)
        self.calls.append((method, path))
        status = _DROPPED
        # Logged on arrival (so the log is in arrival order even for held requests); the status comes later.
        index = self._record(method=method, path=path, body=_json_or_text(request.body))
        fault = self._take_fault(method=method, path=path)
        if fault is not None and fault.after:
            return await self._serve_then_fault(request, fault, index=index)
        try:
            response = await self._apply_fault(request, fault) if fault is not None else None
            if response is None:
                response = await self._serve(request)
                status = response.status
            return response
        except kmock.KubernetesError as exc:
            status = exc.status
            raise
        except Exception:
            status = 500
            raise
        finally:
            self._settle(index, status=status)

    async def _serve(self, request: Any) -> aiohttp.web.StreamResponse:
        # Skip KubernetesEmulator._handle: it mutates the store before any handler may refuse the request
        # (no preconditions, /scale merged into the Deployment). Our fallbacks mutate instead.
        response: aiohttp.web.StreamResponse = await super(kmock.KubernetesEmulator, self)._handle(request)
        return response

    def _settle(self, index: int | None, *, status: int) -> None:
        if index is not None:
            self.mutations[index] = self.mutations[index]._replace(status=status, at=time.time())

    def _answered(self, index: int | None, *, status: int) -> None:
        if index is not None:  # ``at`` stays the time the change landed
            self.mutations[index] = self.mutations[index]._replace(answered=status)

    def _record(self, *, method: str, path: str, body: Any) -> int | None:
        if method not in _MUTATING:
            return None
        parsed = _parse_path(path)
        spec = RESOURCES.get(parsed.resource or "")
        kind = spec.kind if spec else ""
        name = parsed.name
        if name is None and isinstance(body, dict):  # a create names its object in the body
            name = (body.get("metadata") or {}).get("name")
        self.mutations.append(Mutation(method, path, kind, parsed.namespace, name, body, _DROPPED))
        return len(self.mutations) - 1

    def _take_fault(self, *, method: str, path: str) -> Fault | None:
        fault = next((f for f in self._faults if f.matches(method, path)), None)
        if fault is not None:
            fault.hits += 1
        return fault

    async def _apply_fault(self, request: Any, fault: Fault) -> aiohttp.web.StreamResponse | None:
        if fault.delay > 0:
            await self._hold(fault.delay)
            if _client_gone(request):
                return _drop(request)
        if fault.reset:
            return _drop(request)
        if fault.status is not None:
            raise _k8s_error(fault.status, fault.message, details={"injected": True})
        return None

    async def _serve_then_fault(self, request: Any, fault: Fault, *, index: int | None) -> aiohttp.web.StreamResponse:
        """An ``after`` fault: the request is served (its change lands and is logged now), the answer spoiled."""
        response: aiohttp.web.StreamResponse | None = None
        error: kmock.KubernetesError | None = None
        try:
            response = await self._serve(request)
            status = response.status
        except kmock.KubernetesError as exc:
            error, status = exc, exc.status
        except Exception:
            self._settle(index, status=500)
            raise
        self._settle(index, status=status)  # logged as landed before the client hears anything
        if fault.delay > 0:
            await self._hold(fault.delay)
        if fault.reset or _client_gone(request):
            self._answered(index, status=_DROPPED)
            return _drop(request)
        if fault.status is not None:
            self._answered(index, status=fault.status)
            raise _k8s_error(fault.status, fault.message, details={"injected": True})
        if error is not None:
            raise error
        assert response is not None
        return response

    async def _hold(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=delay)

    # --- kmock fallbacks (overridden) -----------------------------------------------------------------

    async def _serve_version(self, request: Any) -> JsonDict:
        payload = await super()._serve_version(request)
        assert isinstance(payload, dict)
        if request.resource.group == "":
            payload["groupVersion"] = "v1"  # kmock reports "/v1"; kubectl and client-go reject that
        for entry in payload.get("resources", []):
            if entry["name"].endswith("/scale"):
                entry.update(kind="Scale", group="autoscaling", version="v1", verbs=["get", "patch", "update"])
        return payload

    async def _serve_fetch(self, request: Any) -> JsonDict:
        async with self._lock:
            obj = self._live_raw(self._key(request))
        return scale_of(obj) if request.subresource == "scale" else obj

    async def _serve_api(self, request: Any) -> JsonDict:
        payload = await super()._serve_api(request)
        assert isinstance(payload, dict)
        return {"apiVersion": "v1", **payload, "serverAddressByClientCIDRs": []}  # required by the client

    async def _serve_discovery(self, request: Any) -> Any:
        # kubernetes_asyncio asks discovery paths with a trailing slash ("/api/v1/", "/apis/apps/"); kmock's
        # own discovery routes match only the bare paths, and kmock parses these as lists of no resource.
        if re.fullmatch(r"/apis/[^/]+", str(request.url.path).rstrip("/")):
            return await self._serve_group(request)
        return await self._serve_version(request)

    async def _serve_list(self, request: Any) -> JsonDict:
        if request.resource.plural is None:
            result: JsonDict = await self._serve_discovery(request)
            return result
        resource = self._known_resource(request)
        terms = parse_label_selector(request.params.get("labelSelector", ""))
        async with self._lock:
            items = [
                self._live_raw(key)
                for key, obj in self._objects.items()
                if key[0] == request.resource and not obj.deleted
                if request.namespace is None or key[1] == request.namespace
            ]
        items = [item for item in items if labels_match(item.get("metadata", {}).get("labels") or {}, terms)]
        kind = RESOURCES[resource].kind if resource in RESOURCES else "List"
        return {
            "apiVersion": _api_version(resource),
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(self._counter)},
            "items": items,
        }

    async def _serve_create(self, request: Any) -> Any:
        resource = self._known_resource(request)
        body = _json_body(request)
        if not isinstance(body, dict):
            raise _k8s_error(400, "the body of a create must be a JSON object")
        name = self._new_name(body)
        async with self._lock:
            key = (request.resource, request.namespace, name)
            if key in self._objects and not self._objects[key].deleted:
                raise _k8s_error(409, f'{resource} "{name}" already exists', details={"name": name})
            metadata = {**(body.get("metadata") or {}), "resourceVersion": None}
            obj = self._stamp(resource, request.namespace, name, {**body, "metadata": metadata})
            await self._store(key, obj, event="ADDED")
        return kmock.Response(status=201, payload=obj)  # type: ignore[attr-defined]  # exported, not in __all__

    async def _serve_update(self, request: Any) -> JsonDict:
        resource = self._known_resource(request)
        async with self._lock:
            key = self._key(request)
            stored = self._live_raw(key)
            if request.subresource == "scale":
                return await self._patch_scale(key, stored, _json_body(request))
            patched = self._patched(stored, request)
            _check_precondition(stored, patched, what=f'{resource} "{request.name}"')
            obj = self._stamp(resource, request.namespace, request.name, patched, previous=stored)
            await self._store(key, obj, event="MODIFIED")
        return obj

    async def _serve_replace(self, request: Any) -> JsonDict:
        resource = self._known_resource(request)
        body = _json_body(request)
        if not isinstance(body, dict) or request.name is None:
            raise _k8s_error(400, "a replace needs an object name in the URL and a JSON object body")
        async with self._lock:
            key = self._key(request)
            stored = self._live_raw(key)
            if request.subresource == "scale":
                return await self._replace_scale(key, stored, body)
            _check_precondition(stored, body, what=f'{resource} "{request.name}"')
            self._check_name(body, request.name)
            if "status" in stored and "status" in RESOURCES.get(resource, _ResourceSpec("", "")).subresources:
                body = {**body, "status": stored["status"]}  # status is owned by the /status subresource
            obj = self._stamp(resource, request.namespace, request.name, body, previous=stored)
            await self._store(key, obj, event="MODIFIED")
        return obj

    async def _serve_delete(self, request: Any) -> JsonDict:
        resource = self._known_resource(request)
        async with self._lock:
            key = self._key(request)
            stored = self._live_raw(key)
            self._objects[key].delete()
            self._counter += 1
            await self._buses[request.resource].put({"type": "DELETED", "object": stored})
        details = {"name": request.name, "kind": resource.rsplit("/", 1)[-1], "uid": stored["metadata"]["uid"]}
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success", "details": details}

    # --- the /scale subresource -----------------------------------------------------------------------

    async def _patch_scale(self, key: Any, stored: JsonDict, patch: Any) -> JsonDict:
        current = scale_of(stored)
        wanted = json_patch(current, patch) if isinstance(patch, list) else merge_patch(current, patch or {})
        return await self._replace_scale(key, stored, wanted)

    async def _replace_scale(self, key: Any, stored: JsonDict, wanted: JsonDict) -> JsonDict:
        _check_precondition(stored, wanted, what=f'deployments.apps "{key[2]}"')
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise _k8s_error(422, f"spec.replicas must be a non-negative integer, got {replicas!r}")
        obj = self._stamp("apps/v1/deployments", key[1], key[2], _scaled(stored, replicas), previous=stored)
        await self._store(key, obj, event="MODIFIED")
        return scale_of(obj)

    # --- store internals (callers hold self._lock) -----------------------------------------------------

    def _key(self, request: Any) -> tuple[Any, str | None, str]:
        return (request.resource, request.namespace, request.name)

    def _known_resource(self, request: Any) -> str:
        resource = request.resource
        if resource is None or resource.plural is None:
            raise _k8s_error(404, "the server could not find the requested resource")
        text = f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/")
        if resource not in self._get_resources():
            raise _k8s_error(404, f"the server could not find the requested resource ({text})")
        return text

    def _live_raw(self, key: Any) -> JsonDict:
        if key not in self._objects or self._objects[key].deleted:
            raise _k8s_error(404, f'"{key[2]}" not found', details={"name": key[2]})
        obj = self._objects[key]
        if not obj.last.get("metadata", {}).get("resourceVersion"):
            # Stored behind our back (``emu.objects[...] = {...}``): stamp in place, without a new version.
            resource = f"{key[0].group}/{key[0].version}/{key[0].plural}".lstrip("/")
            obj.history[-1] = self._stamp(resource, key[1], key[2], obj.last.raw)
        return copy.deepcopy(obj.raw)

    async def _store(self, key: Any, obj: JsonDict, *, event: str) -> None:
        if key in self._objects:
            self._objects[key].history.append(obj)
        else:
            self._objects[key] = obj
        await self._buses[key[0]].put({"type": event, "object": copy.deepcopy(obj)})

    def _patched(self, stored: JsonDict, request: Any) -> JsonDict:
        content_type = _header(request, "content-type")
        if "apply-patch" in content_type:
            raise _k8s_error(415, "server-side apply is not supported by this emulator")
        patch = _json_body(request)
        if isinstance(patch, list):
            return json_patch(stored, patch)
        if not isinstance(patch, dict):
            raise _k8s_error(400, "a patch body must be a JSON object or a JSON patch array")
        return merge_patch(stored, patch)

    def _check_name(self, body: JsonDict, name: str) -> None:
        body_name = (body.get("metadata") or {}).get("name")
        if body_name not in (None, name):
            raise _k8s_error(400, f"the name of the object ({body_name}) does not match the name in the URL")

    def _new_name(self, body: JsonDict) -> str:
        metadata = body.get("metadata") or {}
        name = metadata.get("name") or ""
        if not name and metadata.get("generateName"):
            name = f"{metadata['generateName']}{uuid.uuid4().hex[:5]}"
        if not name:
            raise _k8s_error(422, "metadata.name or metadata.generateName is required")
        return str(name)

    def _stamp(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        previous: Mapping[str, Any] | None = None,
    ) -> JsonDict:
        """Fill server-managed fields; bump resourceVersion, and generation when the spec changed."""
        self._counter += 1
        obj = copy.deepcopy(dict(body))
        old_meta = (previous or {}).get("metadata", {})
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if v is not None}
        generation = old_meta.get("generation", 0)
        if previous is None or _spec_part(previous) != _spec_part(obj):
            generation += 1
        meta.update(
            name=name,
            uid=old_meta.get("uid") or meta.get("uid") or str(uuid.uuid4()),
            creationTimestamp=old_meta.get("creationTimestamp") or meta.get("creationTimestamp") or _now(),
            resourceVersion=str(self._counter),
            generation=generation,
        )
        if namespace is not None:
            meta["namespace"] = namespace
        spec = RESOURCES.get(resource)
        obj.setdefault("apiVersion", _api_version(resource))
        if spec is not None:
            obj.setdefault("kind", spec.kind)
        obj["metadata"] = meta
        return obj


def _api_version(resource: str) -> str:
    return resource.rsplit("/", 1)[0]


def _header(request: Any, name: str) -> str:
    return next((str(v) for k, v in request.headers.items() if k.lower() == name), "")


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode("utf-8", errors="replace")


def _json_body(request: Any) -> Any:
    try:
        return json.loads(request.body) if request.body else None
    except ValueError as exc:
        raise _k8s_error(400, f"the request body is not valid JSON: {exc}") from exc


def _client_gone(request: Any) -> bool:
    transport = request._raw_request.transport if request._raw_request is not None else None
    return transport is None or transport.is_closing()


def _drop(request: Any) -> aiohttp.web.StreamResponse:
    """Abort the TCP connection: the client sees a reset/disconnect instead of a response."""
    transport = request._raw_request.transport if request._raw_request is not None else None
    if transport is not None:
        transport.abort()
    return aiohttp.web.Response(status=500)  # never delivered: the connection is gone


@contextlib.asynccontextmanager
async def run_emulator(
    objects: Iterable[SeedObject] = (), *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[Emulator, str]]:
    """Serve a fresh :class:`Emulator` over HTTP on ``host`` (a free port by default); yield it and its URL."""
    emulator = Emulator()
    emulator.seed(objects)
    async with emulator:
        runner = aiohttp.web.ServerRunner(aiohttp.web.Server(emulator), shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = aiohttp.web.TCPSite(runner, host, port)
            await site.start()
            bound_port = runner.addresses[0][1]
            yield emulator, f"http://{host}:{bound_port}"
        finally:
            emulator.close()
            await runner.cleanup()


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
