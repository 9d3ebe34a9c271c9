"""What a traffic switch is: the plug-in seam for every kind of object that routes traffic to a canary.

A switch knows one kind of object (an NGINX canary Ingress, a Gateway API HTTPRoute, an Istio VirtualService ...)
and answers, as pure functions of the object's JSON, the questions a rollback and a restore ask:

- ``snapshot(body)``: what matters about the object, as JSON; stored as a step's before and after values;
- ``check(body)``: raise :class:`SwitchProblem` when the canary could never be turned off there (checked before
  anything is changed, so a plan that cannot complete changes nothing);
- ``is_off(body)`` and ``turn_off(body)``: whether no traffic reaches the canary, and the merge patch that does it;
- ``restore(body, before)``: the merge patch that puts a ``before`` snapshot back (:class:`SwitchProblem` when the
  object no longer fits it);
- ``facts(body)``: what an incident report shows about the routing at decision time (optional detail);
- ``summary(before, after)``: one line for the Kubernetes Event (optional detail);
- ``leftover(body)``: canary traffic it could not turn off (e.g. a header rule with no stable backend to point at):
  the rest of the rollback still runs, and it ends PARTIAL, "manual action required" (optional).

A switch never talks to the cluster: the executor reads the object and sends the merge patch through the generic
object calls of :class:`responder.ports.ClusterPort` (``get_object`` / ``patch_object``), with the resourceVersion
it read as the precondition, records before/after snapshots, and checks on restore that the live snapshot is still
the one the rollback left (or already the one it restores). Adding a kind of traffic object is a new module here
with one ``@register`` class, its line in :mod:`responder.traffic`, and its RBAC rule in the chart; nothing in the
engine, the store or the core changes. See docs/adding-a-traffic-switch.md.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from responder.core.model import TrafficRef

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Api:
    """Where objects of a kind live in the Kubernetes API (also what the chart's RBAC rule grants)."""

    group: str
    version: str
    plural: str

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}/{self.version}"


class SwitchProblem(ValueError):
    """The object does not look the way this switch needs (the canary cannot be turned off, or put back)."""


class TrafficSwitch(Protocol):
    kind: ClassVar[str]  # the registry key, as written in a target's ``traffic: [{kind: ...}]``
    api: ClassVar[Api]
    options: ClassVar[Mapping[str, bool]]  # the option templates the kind takes: name -> required
    ref: TrafficRef

    @classmethod
    def validate_options(cls, options: Mapping[str, str]) -> None: ...

    namespace: str

    def snapshot(self, body: Mapping[str, Any]) -> Json: ...

    def check(self, body: Mapping[str, Any]) -> None: ...

    def is_off(self, body: Mapping[str, Any]) -> bool: ...

    def turn_off(self, body: Mapping[str, Any]) -> Json: ...

    def restore(self, body: Mapping[str, Any], before: Mapping[str, Any]) -> Json: ...

    def facts(self, body: Mapping[str, Any]) -> Json: ...

    def summary(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> str: ...

    def leftover(self, body: Mapping[str, Any]) -> str | None: ...


class Switch:
    """A convenient base: holds the reference and the namespace, reads options, reports no extra facts."""

    kind: ClassVar[str]
    api: ClassVar[Api]
    options: ClassVar[Mapping[str, bool]] = {}

    def __init__(self, ref: TrafficRef, *, namespace: str) -> None:
        self.ref, self.namespace = ref, namespace

    def option(self, name: str) -> str:
        value = self.ref.option(name)
        if not value:
            raise SwitchProblem(f"{self.kind} {self.ref.name}: option {name!r} is not set")
        return value

    @classmethod
    def validate_options(cls, options: Mapping[str, str]) -> None:
        """Raise ``ValueError`` when the options (as templates) can never work together; run when the
        configuration loads, so a target that could never be rolled back is refused at start, not at 3 a.m."""

    def check(self, body: Mapping[str, Any]) -> None:  # noqa: B027 - most kinds can always be turned off
        """Nothing to check by default."""

    def facts(self, body: Mapping[str, Any]) -> Json:
        return {}

    def leftover(self, body: Mapping[str, Any]) -> str | None:
        """Canary traffic this switch could not turn off in ``body`` (turned off as far as it could be), said so
        that people can act; None when none is left. The rollback goes on and ends PARTIAL."""
        return None

    def summary(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
        """One line for the Kubernetes Event and logs: what turning the canary off changed."""
        return f"canary traffic off on {self.kind} {self.ref.name}"


_REGISTRY: dict[str, type[Switch]] = {}


def register(cls: type[Switch]) -> type[Switch]:
    """Class decorator: make a switch available under its ``kind``."""
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ValueError(f"two traffic switches claim kind {cls.kind!r}")
    _REGISTRY[cls.kind] = cls
    return cls


def kinds() -> dict[str, type[Switch]]:
    """Every registered switch by kind (after :mod:`responder.traffic` has imported them all)."""
    return dict(_REGISTRY)


def switch_for(ref: TrafficRef, *, namespace: str) -> TrafficSwitch:
    try:
        cls = _REGISTRY[ref.kind]
    except KeyError:
        raise SwitchProblem(f"no traffic switch of kind {ref.kind!r} (known: {', '.join(sorted(_REGISTRY))})") from None
    switch: TrafficSwitch = cls(ref, namespace=namespace)  # type: ignore[assignment]
    return switch


def merged(body: Mapping[str, Any], patch: Mapping[str, Any]) -> Json:
    """``body`` with a JSON merge patch (RFC 7386) applied: what the object looks like once ``patch`` lands."""
    result: Json = copy.deepcopy(dict(body))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def annotations_of(body: Mapping[str, Any]) -> Mapping[str, str]:
    found = (body.get("metadata") or {}).get("annotations") or {}
    return found if isinstance(found, Mapping) else {}


def spec(body: Mapping[str, Any]) -> Mapping[str, Any]:
    found = body.get("spec") or {}
    return found if isinstance(found, Mapping) else {}
