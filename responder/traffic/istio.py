"""Istio VirtualService: no HTTP route of the VirtualService sends anything to the canary destination any more.

Checked against Istio's API ``networking.istio.io/v1`` (VirtualService is GA at v1 since Istio 1.22; v1beta1 and
v1alpha3 serve the same schema): istio/api ``networking/v1/virtual_service.proto``, and istio/istio's validation
(``pkg/config/validation``) and route translation (``pilot/pkg/networking/core/route``). The facts this relies on:

- ``spec.http`` is an ordered list of HTTPRoute; a request takes the first route whose ``match`` (header, cookie
  via the ``cookie`` header, uri ...) it satisfies; a route without ``match`` takes every request. A forwarding
  route lists its destinations in ``route``: HTTPRouteDestination ``{destination: {host, subset, port}, weight,
  headers}``. Routes that redirect, answer directly or delegate have no ``route`` and are left alone.
- ``weight`` is an integer. A route with one destination sends it every request whatever its weight (it is
  usually omitted). With several, a destination receives ``weight / sum``: an omitted weight is 0 and a
  destination weighted 0 receives nothing. Istio up to 1.14 rejected several destinations whose weights do not
  add up to 100; since 1.15 (istio/istio#39544) it only rejects a total of 0. Keeping each route's total (below)
  therefore stays valid on every version.
- A short ``host`` (no dots) means that Service in the VirtualService's namespace: ``checkout-canary`` and
  ``checkout-canary.shop.svc.cluster.local`` are the same destination, so both are recognised as the canary.

The canary is named by options: ``canary_host`` and/or ``canary_subset`` (a destination is the canary when its
host is ``canary_host``, if given, and its subset is ``canary_subset``, if given). Turning the canary off changes
only routes that send it traffic:

- a route with other (*stable*) destinations gives the canary's weight to them, in proportion to theirs (evenly
  when they are all 0), the rounding remainder to the biggest: the route keeps its total, the canary is left at
  weight 0 (so it stays visible, and a second rollback is a no-op);
- a route whose only destinations are the canary (typically a header- or cookie-matched route) is pointed at the
  stable destination: it is put first with the route's whole weight (100 when the canary's weight was omitted),
  the canary kept behind it at weight 0. The stable destination comes from the options ``stable_host`` /
  ``stable_subset`` (the canary destination with that host and/or subset) or else from the VirtualService: the
  one non-canary destination of the routes that split traffic with the canary, else of the routes without
  ``match``, else of all other routes (narrowed to the canary's host when several). When none, or several, are
  found, that route is left as it is and reported (:meth:`IstioVirtualService.leftover`): the other routes, the
  other traffic objects and the scale-down still happen, and the rollback ends PARTIAL, "manual action required"
  (as for an HTTPRoute rule with no stable Service). Only a VirtualService with no route naming the canary, or
  stable options that name the canary itself, fail :meth:`IstioVirtualService.check` (nothing is changed).

TCP and TLS routes (``spec.tcp``, ``spec.tls``) and delegate VirtualServices are not looked at.

The snapshot is the whole ``spec.http`` list, exactly as read: the rollback records it before and after its
change, the generic restore check refuses when the live list is neither, and a restore sends ``before`` back as
it was. The list goes out in one JSON merge patch (which replaces lists) with the resourceVersion read, so a
concurrent edit is a conflict, retried from a fresh read, never overwritten. Nothing here does I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from responder.traffic.base import Api, Json, Switch, SwitchProblem, register, spec

__all__ = [
    "Canary",
    "IstioVirtualService",
    "NoStable",
    "canary_is_off",
    "canary_routes",
    "stable_destination",
    "turn_canary_off",
]

Routes = Sequence[Mapping[str, Any]]
Dest = dict[str, Any]  # an HTTPRouteDestination: {"destination": {...}, "weight": int, ...}


class NoStable(SwitchProblem):
    """A canary-only route has no stable destination to be pointed at (none found, or several)."""


class Canary:
    """Which destinations are the canary, and where its traffic goes instead (from the switch's options)."""

    def __init__(
        self,
        *,
        namespace: str,
        host: str | None = None,
        subset: str | None = None,
        stable_host: str | None = None,
        stable_subset: str | None = None,
    ) -> None:
        if not host and not subset:
            raise SwitchProblem("set canary_host and/or canary_subset: which destination is the canary")
        self.namespace, self.host, self.subset = namespace, host or None, subset or None
        self.stable_host, self.stable_subset = stable_host or None, stable_subset or None

    def matches(self, destination: Mapping[str, Any]) -> bool:
        return (self.host is None or self._same_host(str(destination.get("host") or ""))) and (
            self.subset is None or destination.get("subset") == self.subset
        )

    def _same_host(self, host: str) -> bool:
        assert self.host is not None
        if host == self.host:
            return True
        service = _service(host, self.namespace)
        return service is not None and service == _service(self.host, self.namespace)

    def describe(self) -> str:
        return "/".join(p for p in (self.host or "*", self.subset) if p)


def _service(host: str, namespace: str) -> tuple[str, str] | None:
    """(name, namespace) of a Kubernetes Service host: ``a`` (short, in ``namespace``), ``a.ns``, ``a.ns.svc``,
    ``a.ns.svc.<cluster domain>``; None for anything else (external hosts are compared as written)."""
    parts = host.split(".")
    if len(parts) == 1:
        return (host, namespace)
    if len(parts) == 2 or parts[2] == "svc":
        return (parts[0], parts[1])
    return None


def _dests(route: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = route.get("route") or []
    return [d for d in found if isinstance(d, Mapping)]


def _destination(dest: Mapping[str, Any]) -> Mapping[str, Any]:
    found = dest.get("destination") or {}
    return found if isinstance(found, Mapping) else {}


def _weight(dest: Mapping[str, Any]) -> int:
    return int(dest.get("weight") or 0)


def _canary_at(route: Mapping[str, Any], canary: Canary) -> list[int]:
    return [k for k, d in enumerate(_dests(route)) if canary.matches(_destination(d))]


def _live(route: Mapping[str, Any], canary: Canary) -> bool:
    """Whether the route sends the canary anything: as its only destination (whatever the weight), or weighted."""
    dests, at = _dests(route), _canary_at(route, canary)
    return bool(at) and (len(dests) == 1 or any(_weight(dests[k]) > 0 for k in at))


def canary_routes(routes: Routes, canary: Canary) -> list[int]:
    """Indices of the HTTP routes that name the canary among their destinations (sending it traffic or not)."""
    return [i for i, route in enumerate(routes) if _canary_at(route, canary)]


def canary_is_off(routes: Routes, canary: Canary) -> bool:
    return not any(_live(route, canary) for route in routes)


def turn_canary_off(routes: Routes, canary: Canary) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The routes with nothing sent to the canary wherever that can be done (see the module docstring), and the
    canary-only routes that cannot, each with why (no or several stable destinations); the input is not
    modified. Raises :class:`SwitchProblem` when no route names the canary, or the stable options name the
    canary itself."""
    if not canary_routes(routes, canary):
        raise SwitchProblem(f"no HTTP route has a destination matching the canary {canary.describe()}")
    new_routes = [copy.deepcopy(dict(route)) for route in routes]
    stuck: list[tuple[int, str]] = []
    for i, route in enumerate(routes):
        if not _live(route, canary):
            continue
        dests, at = _dests(route), _canary_at(route, canary)
        if len(at) < len(dests):
            new_routes[i]["route"] = _shift(dests, at)
            continue
        try:
            stable = stable_destination(routes, canary, base=_destination(dests[at[0]]), route=i)
        except NoStable as problem:
            stuck.append((i, str(problem)))
            continue
        new_routes[i]["route"] = _point_at(dests, stable)
    return new_routes, stuck


def _shift(dests: list[Mapping[str, Any]], canary: list[int]) -> list[Dest]:
    """The canary's weight handed to the other destinations of the route, in proportion to theirs."""
    stable = [k for k in range(len(dests)) if k not in canary]
    moved = sum(_weight(dests[k]) for k in canary)
    base = {k: _weight(dests[k]) for k in stable}
    total = sum(base.values())
    shares = {k: (moved * base[k]) // total if total else moved // len(stable) for k in stable}
    largest = max(stable, key=lambda k: (base[k], -k))  # the rounding remainder goes to the biggest stable one
    shares[largest] += moved - sum(shares.values())
    result = [copy.deepcopy(dict(d)) for d in dests]
    for k in canary:
        result[k]["weight"] = 0
    for k in stable:
        result[k]["weight"] = base[k] + shares[k]
    return result


def _point_at(dests: list[Mapping[str, Any]], stable: Mapping[str, Any]) -> list[Dest]:
    """A canary-only route sent to ``stable``: the route's whole weight first, the canary behind it at 0."""
    total = sum(_weight(d) for d in dests) or 100  # one destination takes everything, its weight often omitted
    kept = [{**copy.deepcopy(dict(d)), "weight": 0} for d in dests]
    return [{"destination": copy.deepcopy(dict(stable)), "weight": total}, *kept]


def stable_destination(routes: Routes, canary: Canary, *, base: Mapping[str, Any], route: int) -> Mapping[str, Any]:
    """Where a canary-only route goes instead: from the options, else the one stable destination the
    VirtualService names (see the module docstring). ``base``: the route's canary destination."""
    if canary.stable_host or canary.stable_subset:
        return _from_options(canary, base)
    split = [r for r in routes if _canary_at(r, canary) and len(_canary_at(r, canary)) < len(_dests(r))]
    default = [r for r in routes if not r.get("match") and not _canary_at(r, canary)]
    for found in (split, default, routes):
        candidates = _distinct(_destination(d) for r in found for d in _dests(r) if not canary.matches(_destination(d)))
        if len(candidates) > 1:
            candidates = [c for c in candidates if c.get("host") == base.get("host")] or candidates
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            hosts = ", ".join(_label(c) for c in candidates)
            raise NoStable(
                f"HTTP route {route} sends only to the canary and the stable destination is ambiguous ({hosts}):"
                " set stable_host and/or stable_subset"
            )
    raise NoStable(
        f"HTTP route {route} sends only to the canary and no stable destination is known:"
        " set stable_host and/or stable_subset"
    )


def _from_options(canary: Canary, base: Mapping[str, Any]) -> Mapping[str, Any]:
    """The canary destination with the stable host and/or subset (another host drops the canary's subset)."""
    stable: Json = {"host": canary.stable_host or base.get("host")}
    subset = canary.stable_subset or (None if canary.stable_host else base.get("subset"))
    if subset:
        stable["subset"] = subset
    if "port" in base:
        stable["port"] = copy.deepcopy(base["port"])
    if canary.matches(stable):
        raise SwitchProblem(f"the stable destination {_label(stable)} from the options is the canary itself")
    return stable


def _distinct(destinations: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    for destination in destinations:
        if destination not in found:
            found.append(destination)
    return found


def _label(destination: Mapping[str, Any]) -> str:
    subset = destination.get("subset")
    return f"{destination.get('host')}/{subset}" if subset else str(destination.get("host"))


def _route_label(route: Mapping[str, Any], index: int) -> str:
    return str(route.get("name") or f"#{index}")


@register
class IstioVirtualService(Switch):
    """A target's ``traffic: [{kind: istio, name: VIRTUALSERVICE, canary_host: HOST, canary_subset: SUBSET}]``
    (at least one of the two; ``stable_host`` / ``stable_subset`` optional)."""

    kind = "istio"
    api = Api("networking.istio.io", "v1", "virtualservices")
    options = {"canary_host": False, "canary_subset": False, "stable_host": False, "stable_subset": False}

    @classmethod
    def validate_options(cls, options: Mapping[str, str]) -> None:
        if not (options.get("canary_host") or options.get("canary_subset")):
            raise ValueError("istio needs canary_host and/or canary_subset: which destination is the canary")

    def _canary(self) -> Canary:
        return Canary(
            namespace=self.namespace,
            host=self.ref.option("canary_host"),
            subset=self.ref.option("canary_subset"),
            stable_host=self.ref.option("stable_host"),
            stable_subset=self.ref.option("stable_subset"),
        )

    def _routes(self, body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        routes = spec(body).get("http") or []
        return [r for r in routes if isinstance(r, Mapping)]

    def snapshot(self, body: Mapping[str, Any]) -> Json:
        return {"http": copy.deepcopy(spec(body).get("http"))}

    def check(self, body: Mapping[str, Any]) -> None:
        turn_canary_off(self._routes(body), self._canary())  # raises SwitchProblem when nothing can be done

    def is_off(self, body: Mapping[str, Any]) -> bool:
        """Nothing more can be done: no route sends the canary traffic, or only routes with no stable to take it."""
        routes, canary = self._routes(body), self._canary()
        return canary_is_off(routes, canary) or turn_canary_off(routes, canary)[0] == [dict(r) for r in routes]

    def turn_off(self, body: Mapping[str, Any]) -> Json:
        return {"spec": {"http": turn_canary_off(self._routes(body), self._canary())[0]}}

    def leftover(self, body: Mapping[str, Any]) -> str | None:
        routes, canary = self._routes(body), self._canary()
        if canary_is_off(routes, canary):
            return None
        _, stuck = turn_canary_off(routes, canary)
        if not stuck:
            return None
        which = ", ".join(_route_label(routes[i], i) for i, _ in stuck)
        why = "; ".join(reason for _, reason in stuck)
        return f"HTTP route(s) {which} of VirtualService {self.ref.name} still send to the canary ({why})"

    def restore(self, body: Mapping[str, Any], before: Mapping[str, Any]) -> Json:
        return {"spec": {"http": copy.deepcopy(before.get("http"))}}  # None (there was no list): removed again

    def facts(self, body: Mapping[str, Any]) -> Json:
        """Every route naming the canary, with its destinations and weights at decision time."""
        routes, canary = self._routes(body), self._canary()
        return {
            "routes": [
                {
                    "route": i,
                    "name": routes[i].get("name"),
                    "match": bool(routes[i].get("match")),
                    "destinations": [
                        {**_destination(d), "weight": d.get("weight"), "canary": canary.matches(_destination(d))}
                        for d in _dests(routes[i])
                    ],
                }
                for i in canary_routes(routes, canary)
            ]
        }

    def summary(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
        old, new = list(before.get("http") or []), list(after.get("http") or [])
        changed = [_route_label(r, i) for i, r in enumerate(old) if i >= len(new) or new[i] != r]
        what = f"HTTP route(s) {', '.join(changed)} moved to stable" if changed else "no HTTP route changed"
        return f"canary {self._canary().describe()} off on VirtualService {self.ref.name} ({what})"
