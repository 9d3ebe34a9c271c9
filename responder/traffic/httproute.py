"""Gateway API HTTPRoute: the canary backendRef's weight to 0, its share to the stable backends of the same rule.

An HTTPRoute splits a rule's traffic over its ``backendRefs`` by ``weight`` (default 1; all zero means the rule
answers 500). The canary is the backendRef naming the canary Service (``kind`` Service, core group, same
namespace unless it says otherwise); the *stable* backends are the other backendRefs of the same rule. Turning
the canary off sets its weight to 0 and hands its weight to the stable backends (in proportion to theirs, or
evenly when they are all 0), so the rule keeps its total and never ends up with only zero weights.

A rule whose only backend is the canary (header or cookie canaries: Argo Rollouts' header routing makes such
rules) is pointed at the stable Service instead: a backendRef to it is put first with the rule's weight, the
canary kept behind it at 0 (so a second rollback finds it off). The stable Service is the ``stable_backend``
option if given, else the one non-canary Service the route's other rules send to. When there is none (or several),
that rule is left as it is and reported (:meth:`GatewayHTTPRoute.leftover`): the rest of the rollback still runs,
and the rollback ends PARTIAL, "manual action required".

A *snapshot* records, for each rule that routes to the canary, every backendRef's name and weight (``None``:
unset) by position: the rollback stores the one before and the one after its change, and a restore puts the
before one back only while the route still looks exactly like the after one.

Everything works on plain JSON (lists and dicts, as read from the API); nothing here does I/O. The whole
``spec.rules`` list goes out in one merge patch (a merge patch replaces lists) with the resourceVersion read, so a
concurrent edit of the route is a conflict, retried from a fresh read, never overwritten.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from responder.traffic.base import Api, Json, Switch, SwitchProblem, register, spec

__all__ = [
    "GatewayHTTPRoute",
    "RouteProblem",
    "apply_snapshot",
    "canary_is_off",
    "canary_rules",
    "snapshot",
    "turn_canary_off",
]

Rules = Sequence[Mapping[str, Any]]
Snapshot = list[dict[str, Any]]  # [{"rule": i, "backendRefs": [{"name": str, "weight": int | None}, ...]}]


class RouteProblem(SwitchProblem):
    """The route does not look like a canary route (no such backendRef, or no stable backend beside it)."""


def _refs(rule: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    refs = rule.get("backendRefs") or []
    return [r for r in refs if isinstance(r, Mapping)]


def _is_canary(ref: Mapping[str, Any], *, backend: str, namespace: str) -> bool:
    return (
        ref.get("name") == backend
        and (ref.get("kind") or "Service") == "Service"
        and (ref.get("group") or "") == ""
        and (ref.get("namespace") or namespace) == namespace
    )


def _weight(ref: Mapping[str, Any]) -> int:
    value = ref.get("weight")
    return 1 if value is None else int(value)


def canary_rules(rules: Rules, *, backend: str, namespace: str) -> list[int]:
    """Indices of the rules that have a backendRef naming the canary Service."""
    return [
        i
        for i, rule in enumerate(rules)
        if any(_is_canary(r, backend=backend, namespace=namespace) for r in _refs(rule))
    ]


def snapshot(rules: Rules, indices: Sequence[int]) -> Snapshot:
    """Names and weights of every backendRef of the given rules (weight ``None`` where unset)."""
    return [
        {
            "rule": i,
            "backendRefs": [{"name": r.get("name"), "weight": r.get("weight")} for r in _refs(rules[i])],
        }
        for i in indices
        if i < len(rules)
    ]


def canary_is_off(rules: Rules, *, backend: str, namespace: str) -> bool:
    """Whether every backendRef naming the canary already has weight 0."""
    return all(
        _weight(r) == 0
        for i in canary_rules(rules, backend=backend, namespace=namespace)
        for r in _refs(rules[i])
        if _is_canary(r, backend=backend, namespace=namespace)
    )


def stable_ref(rules: Rules, *, backend: str, namespace: str, stable: str | None) -> dict[str, Any] | None:
    """The backendRef a canary-only rule is pointed at: the ``stable`` Service (with the port the route uses for
    it, else the canary's), else the one other Service the route sends to; None when there is no such one."""
    others: dict[str, Mapping[str, Any]] = {}
    for rule in rules:
        for ref in _refs(rule):
            is_service = (ref.get("kind") or "Service") == "Service" and (ref.get("group") or "") == ""
            same_namespace = (ref.get("namespace") or namespace) == namespace
            if is_service and same_namespace and not _is_canary(ref, backend=backend, namespace=namespace):
                others.setdefault(str(ref.get("name")), ref)
    if stable:
        found = others.get(stable)
        canary_port = next((r.get("port") for rule in rules for r in _refs(rule) if r.get("name") == backend), None)
        port = found.get("port") if found is not None else canary_port
        return {"name": stable, **({"port": port} if port is not None else {})}
    if len(others) != 1:
        return None
    [(name, ref)] = others.items()
    return {"name": name, **({"port": ref["port"]} if ref.get("port") is not None else {})}


def turn_canary_off(
    rules: Rules, *, backend: str, namespace: str, stable: str | None = None
) -> tuple[list[dict[str, Any]], list[int]]:
    """The rules with the canary turned off in every rule that can be (see the module docstring), and the indices
    of the canary-only rules that cannot (no stable Service). Raises :class:`RouteProblem` when no rule routes to
    the canary at all."""
    indices = canary_rules(rules, backend=backend, namespace=namespace)
    if not indices:
        raise RouteProblem(f"no backendRef names the canary Service {backend!r}")
    target = stable_ref(rules, backend=backend, namespace=namespace, stable=stable)
    new_rules = [copy.deepcopy(dict(rule)) for rule in rules]
    stuck = []
    for i in indices:
        shifted = _shift(_refs(rules[i]), backend=backend, namespace=namespace, stable=target)
        if shifted is None:
            stuck.append(i)
        else:
            new_rules[i]["backendRefs"] = shifted
    return new_rules, stuck


def _shift(
    refs: list[Mapping[str, Any]], *, backend: str, namespace: str, stable: dict[str, Any] | None
) -> list[dict[str, Any]] | None:
    canary = [k for k, r in enumerate(refs) if _is_canary(r, backend=backend, namespace=namespace)]
    stable_at = [k for k in range(len(refs)) if k not in canary]
    if not stable_at:
        return _redirect(refs, canary, stable)
    moved = sum(_weight(refs[k]) for k in canary)
    result = [dict(r) for r in refs]
    if moved == 0:
        return result
    for k in canary:
        result[k]["weight"] = 0
    base = {k: _weight(refs[k]) for k in stable_at}
    total = sum(base.values())
    shares = {k: (moved * base[k]) // total if total else moved // len(stable_at) for k in stable_at}
    largest = max(stable_at, key=lambda k: (base[k], -k))  # the rounding remainder goes to the biggest stable backend
    shares[largest] += moved - sum(shares.values())
    for k in stable_at:
        result[k]["weight"] = base[k] + shares[k]
    return result


def _redirect(
    refs: list[Mapping[str, Any]], canary: list[int], stable: dict[str, Any] | None
) -> list[dict[str, Any]] | None:
    """A rule that routes only to the canary: the stable Service first with the rule's weight, the canary at 0
    behind it (None: no stable Service to send it to). A rule already sending nothing to the canary is left."""
    moved = sum(_weight(refs[k]) for k in canary)
    if moved == 0:
        return [dict(r) for r in refs]
    if stable is None:
        return None
    return [{**stable, "weight": moved}, *({**dict(r), "weight": 0} for r in refs)]


def apply_snapshot(rules: Rules, wanted: Snapshot) -> list[dict[str, Any]]:
    """The rules with the backendRefs and weights of ``wanted`` put back (an unset weight is removed again, a
    backendRef the rollback added to a canary-only rule is removed); raises :class:`RouteProblem` when the route's
    backendRefs no longer hold the ones the snapshot names, in that order."""
    new_rules = [copy.deepcopy(dict(rule)) for rule in rules]
    for entry in wanted:
        i = int(entry["rule"])
        refs = _refs(rules[i]) if i < len(rules) else []
        kept = _align(refs, [str(b.get("name")) for b in entry["backendRefs"]])
        if kept is None:
            raise RouteProblem(f"rule {i}'s backendRefs changed (now {[r.get('name') for r in refs]})")
        restored: list[dict[str, Any]] = []
        for ref, saved in zip(kept, entry["backendRefs"], strict=True):
            item = {k: v for k, v in ref.items() if k != "weight"}
            if saved.get("weight") is not None:
                item["weight"] = saved["weight"]
            restored.append(item)
        new_rules[i]["backendRefs"] = restored
    return new_rules


def _align(refs: list[Mapping[str, Any]], names: list[str]) -> list[Mapping[str, Any]] | None:
    """The backendRefs matching ``names`` in order (refs in between, added by a rollback, are dropped)."""
    kept: list[Mapping[str, Any]] = []
    position = 0
    for name in names:
        while position < len(refs) and refs[position].get("name") != name:
            position += 1
        if position == len(refs):
            return None
        kept.append(refs[position])
        position += 1
    return kept


@register
class GatewayHTTPRoute(Switch):
    """A target's ``traffic: [{kind: httproute, name: ROUTE, canary_backend: SERVICE}]``."""

    kind = "httproute"
    api = Api("gateway.networking.k8s.io", "v1", "httproutes")
    options = {"canary_backend": True, "stable_backend": False}

    def _rules(self, body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        rules = spec(body).get("rules") or []
        return [r for r in rules if isinstance(r, Mapping)]

    def _where(self) -> dict[str, str]:
        return {"backend": self.option("canary_backend"), "namespace": self.namespace}

    def _off(self, body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[int]]:
        return turn_canary_off(self._rules(body), **self._where(), stable=self.ref.option("stable_backend"))

    def snapshot(self, body: Mapping[str, Any]) -> Json:
        rules = self._rules(body)
        return {"rules": snapshot(rules, canary_rules(rules, **self._where()))}

    def check(self, body: Mapping[str, Any]) -> None:
        self._off(body)  # raises RouteProblem when no rule routes to the canary

    def is_off(self, body: Mapping[str, Any]) -> bool:
        """Nothing more can be done: the canary is at 0 wherever a stable Service can take its traffic."""
        rules, _ = self._off(body)
        return rules == [dict(r) for r in self._rules(body)]

    def turn_off(self, body: Mapping[str, Any]) -> Json:
        rules, _ = self._off(body)
        return {"spec": {"rules": rules}}

    def leftover(self, body: Mapping[str, Any]) -> str | None:
        _, stuck = self._off(body)
        if not stuck:
            return None
        which = ", ".join(str(i) for i in stuck)
        return (
            f"rule(s) {which} of HTTPRoute {self.ref.name} route only to the canary and no stable Service was found"
            " (set stable_backend on the target): that traffic still goes to the canary"
        )

    def restore(self, body: Mapping[str, Any], before: Mapping[str, Any]) -> Json:
        return {"spec": {"rules": apply_snapshot(self._rules(body), list(before.get("rules") or []))}}

    def facts(self, body: Mapping[str, Any]) -> Json:
        return {"weights": self.snapshot(body)["rules"]}

    def summary(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
        return f"backendRef {self.option('canary_backend')} weighted 0 on HTTPRoute {self.ref.name}"
