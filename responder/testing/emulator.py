"""A Kubernetes API emulator on loopback: kmock's ``KubernetesEmulator`` with the gaps closed.

Owns everything the integration tests and ``canary-responder demo`` need from a fake API server, served over
real HTTP so that the real ``kubernetes_asyncio`` client talks to it unchanged:

- server-managed metadata (``resourceVersion`` from one global counter, ``uid``, ``creationTimestamp``,
  ``generation``) and optimistic concurrency: a PATCH or PUT whose body carries a stale
  ``metadata.resourceVersion`` gets ``409 Conflict``;
- PUT (replace), POST (create, ``409 AlreadyExists`` on a duplicate), DELETE, ``labelSelector`` on lists;
- the ``deployments/scale`` subresource as a real ``autoscaling/v1`` ``Scale``;
- pods and their ``log`` subresource (``tailLines``, ``limitBytes``, ``previous``; the text set with
  :meth:`Emulator.set_log`), and ``fieldSelector`` on lists (Events by ``involvedObject``);
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
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp.web
import kmock

from responder.testing.kube_json import (
    RESOURCES,
    VERBS,
    client_gone,
    drop,
    json_or_text,
    json_patch,
    k8s_error,
    labels_match,
    merge_patch,
    parse_label_selector,
    parse_path,
    scale_of,
)
from responder.testing.seeds import LogSeed, SeedObject, sample_canary_objects, sample_canary_pods
from responder.testing.served import Served

__all__ = [
    "Emulator",
    "Fault",
    "LogSeed",
    "Mutation",
    "SeedObject",
    "json_patch",
    "labels_match",
    "merge_patch",
    "parse_label_selector",
    "run_emulator",
    "sample_canary_objects",
    "sample_canary_pods",
    "scale_of",
]

JsonDict = dict[str, Any]

_MUTATING = frozenset({"PATCH", "PUT", "POST", "DELETE"})
_DROPPED = 0  # Mutation.status of a request whose connection was dropped before any response


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
    agent: str = ""  # the client's User-Agent (the responder names its replica there)

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
        return parse_path(self.path).subresource


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
    agent_contains: str | None = None  # only requests from this client (its User-Agent)
    hits: int = 0

    def matches(self, method: str, path: str, agent: str = "") -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.agent_contains is not None and self.agent_contains not in agent:
            return False
        return self.path_contains is None or self.path_contains in path


class Emulator(Served):
    """A stateful Kubernetes API emulator; serve it with :func:`run_emulator` (or ``kmock.Server``)."""

    def __init__(self) -> None:
        # Our state first: kmock's attrs-generated __init__ calls __attrs_post_init__ at its end.
        self.mutations: list[Mutation] = []
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request, in arrival order
        self._faults: list[Fault] = []
        self.logs = {}
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
                verbs=set(VERBS),
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
        agent_contains: str | None = None,
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
            agent_contains=agent_contains,
        )
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_log(self, namespace: str, pod: str, container: str, text: str, *, previous: bool = False) -> None:
        """What ``pods/{pod}/log`` serves for ``container`` (``previous``: its instance before the last restart; a
        previous log never set answers 400, as the API does when there is none)."""
        self.logs[(namespace, pod, container, previous)] = text

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

    def seed(self, objects: Iterable[SeedObject | LogSeed]) -> None:
        for item in objects:
            if isinstance(item, LogSeed):
                self.set_log(item.namespace, item.pod, item.container, item.text, previous=item.previous)
            else:
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
        agent = str(request.headers.get("User-Agent", ""))
        index = self._record(method=method, path=path, body=json_or_text(request.body), agent=agent)
        fault = self._take_fault(method=method, path=path, agent=agent)
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

    def _record(self, *, method: str, path: str, body: Any, agent: str = "") -> int | None:
        if method not in _MUTATING:
            return None
        parsed = parse_path(path)
        spec = RESOURCES.get(parsed.resource or "")
        kind = spec.kind if spec else ""
        name = parsed.name
        if name is None and isinstance(body, dict):  # a create names its object in the body
            name = (body.get("metadata") or {}).get("name")
        self.mutations.append(Mutation(method, path, kind, parsed.namespace, name, body, _DROPPED, agent=agent))
        return len(self.mutations) - 1

    def _take_fault(self, *, method: str, path: str, agent: str = "") -> Fault | None:
        fault = next((f for f in self._faults if f.matches(method, path, agent)), None)
        if fault is not None:
            fault.hits += 1
        return fault

    async def _apply_fault(self, request: Any, fault: Fault) -> aiohttp.web.StreamResponse | None:
        if fault.delay > 0:
            await self._hold(fault.delay)
            if client_gone(request):
                return drop(request)
        if fault.reset:
            return drop(request)
        if fault.status is not None:
            raise k8s_error(fault.status, fault.message, details={"injected": True})
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
        if fault.reset or client_gone(request):
            self._answered(index, status=_DROPPED)
            return drop(request)
        if fault.status is not None:
            self._answered(index, status=fault.status)
            raise k8s_error(fault.status, fault.message, details={"injected": True})
        if error is not None:
            raise error
        assert response is not None
        return response

    async def _hold(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=delay)


@contextlib.asynccontextmanager
async def run_emulator(
    objects: Iterable[SeedObject | LogSeed] = (), *, host: str = "127.0.0.1", port: int = 0
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
