"""Gateway API HTTPRoute: the canary backendRef's weight to 0, its share to the stable backends of the same rule.

An HTTPRoute splits a rule's traffic over its ``backendRefs`` by ``weight`` (default 1; all zero means the rule
answers 500). The canary is the backendRef naming the canary Service (``kind`` Service, core group, same
namespace unless it says otherwise); the *stable* backends are the other backendRefs of the same rule. Turning
the canary off sets its weight to 0 and hands its weight to the stable backends (in proportion to theirs, or
evenly when they are all 0), so the rule keeps its total and never ends up with only zero weights.

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


def turn_canary_off(rules: Rules, *, backend: str, namespace: str) -> tuple[list[dict[str, Any]], Snapshot, Snapshot]:
    """The rules with the canary at weight 0 and its weight given to the stable backends of each rule, plus the
    before and after snapshots of the rules that changed hands. Raises :class:`RouteProblem` when no rule
    routes to the canary, or a rule routes only to it (weight 0 there would turn its traffic into errors)."""
    indices = canary_rules(rules, backend=backend, namespace=namespace)
    if not indices:
        raise RouteProblem(f"no backendRef names the canary Service {backend!r}")
    new_rules = [copy.deepcopy(dict(rule)) for rule in rules]
    for i in indices:
        new_rules[i]["backendRefs"] = _shift(_refs(rules[i]), backend=backend, namespace=namespace, rule=i)
    return new_rules, snapshot(rules, indices), snapshot(new_rules, indices)


def _shift(refs: list[Mapping[str, Any]], *, backend: str, namespace: str, rule: int) -> list[dict[str, Any]]:
    canary = [k for k, r in enumerate(refs) if _is_canary(r, backend=backend, namespace=namespace)]
    stable = [k for k in range(len(refs)) if k not in canary]
    if not stable:
        raise RouteProblem(f"rule {rule} routes only to the canary Service {backend!r}: no stable backendRef")
    moved = sum(_weight(refs[k]) for k in canary)
    result = [dict(r) for r in refs]
    if moved == 0:
        return result
    for k in canary:
        result[k]["weight"] = 0
    base = {k: _weight(refs[k]) for k in stable}
    total = sum(base.values())
    shares = {k: (moved * base[k]) // total if total else moved // len(stable) for k in stable}
    largest = max(stable, key=lambda k: (base[k], -k))  # the rounding remainder goes to the biggest stable backend
    shares[largest] += moved - sum(shares.values())
    for k in stable:
        result[k]["weight"] = base[k] + shares[k]
    return result


def apply_snapshot(rules: Rules, wanted: Snapshot) -> list[dict[str, Any]]:
    """The rules with the weights of ``wanted`` put back (an unset weight is removed again); raises
    :class:`RouteProblem` when the route's backendRefs are no longer the ones the snapshot names."""
    new_rules = [copy.deepcopy(dict(rule)) for rule in rules]
    for entry in wanted:
        i = int(entry["rule"])
        refs = _refs(rules[i]) if i < len(rules) else []
        names = [r.get("name") for r in refs]
        if names != [b.get("name") for b in entry["backendRefs"]]:
            raise RouteProblem(f"rule {i}'s backendRefs changed (now {names})")
        restored: list[dict[str, Any]] = []
        for ref, saved in zip(refs, entry["backendRefs"], strict=True):
            item = {k: v for k, v in ref.items() if k != "weight"}
            if saved.get("weight") is not None:
                item["weight"] = saved["weight"]
            restored.append(item)
        new_rules[i]["backendRefs"] = restored
    return new_rules


@register
class GatewayHTTPRoute(Switch):
    """A target's ``traffic: [{kind: httproute, name: ROUTE, canary_backend: SERVICE}]``."""

    kind = "httproute"
    api = Api("gateway.networking.k8s.io", "v1", "httproutes")
    options = {"canary_backend": True}

    def _rules(self, body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        rules = spec(body).get("rules") or []
        return [r for r in rules if isinstance(r, Mapping)]

    def _where(self) -> dict[str, str]:
        return {"backend": self.option("canary_backend"), "namespace": self.namespace}

    def snapshot(self, body: Mapping[str, Any]) -> Json:
        rules = self._rules(body)
        return {"rules": snapshot(rules, canary_rules(rules, **self._where()))}

    def check(self, body: Mapping[str, Any]) -> None:
        turn_canary_off(self._rules(body), **self._where())  # raises RouteProblem when it cannot be done

    def is_off(self, body: Mapping[str, Any]) -> bool:
        return canary_is_off(self._rules(body), **self._where())

    def turn_off(self, body: Mapping[str, Any]) -> Json:
        rules, _, _ = turn_canary_off(self._rules(body), **self._where())
        return {"spec": {"rules": rules}}

    def restore(self, body: Mapping[str, Any], before: Mapping[str, Any]) -> Json:
        return {"spec": {"rules": apply_snapshot(self._rules(body), list(before.get("rules") or []))}}

    def facts(self, body: Mapping[str, Any]) -> Json:
        return {"weights": self.snapshot(body)["rules"]}

    def summary(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
        return f"backendRef {self.option('canary_backend')} weighted 0 on HTTPRoute {self.ref.name}"
