"""The HTTPRoute weight arithmetic (pure): canary to 0, its weight to the stable backends, and back."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responder.traffic.httproute import (
    RouteProblem,
    apply_snapshot,
    canary_is_off,
    canary_rules,
    snapshot,
    turn_canary_off,
)

NS = "shop"


def ref(name: str, weight: int | None = None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "port": 80, **extra}
    if weight is not None:
        found["weight"] = weight
    return found


def weights(rules: list[dict[str, Any]], rule: int = 0) -> list[int | None]:
    return [r.get("weight") for r in rules[rule]["backendRefs"]]


def turn_off(
    rules: list[dict[str, Any]], stable: str | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The new rules, and the before and after snapshots of the rules that route to the canary."""
    new, stuck = turn_canary_off(rules, backend="app-canary", namespace=NS, stable=stable)
    assert stuck == []
    indices = canary_rules(rules, backend="app-canary", namespace=NS)
    return new, snapshot(rules, indices), snapshot(new, indices)


def test_the_canary_weight_goes_to_the_stable_backend() -> None:
    rules = [{"backendRefs": [ref("app", 90), ref("app-canary", 10)]}]
    new, before, after = turn_off(rules)
    assert weights(new) == [100, 0]
    assert before == [{"rule": 0, "backendRefs": [{"name": "app", "weight": 90}, {"name": "app-canary", "weight": 10}]}]
    assert after == [{"rule": 0, "backendRefs": [{"name": "app", "weight": 100}, {"name": "app-canary", "weight": 0}]}]
    assert weights(rules) == [90, 10]  # the input is not modified


def test_unset_weights_count_as_one_and_a_canary_at_100_percent_leaves_no_zero_only_rule() -> None:
    assert weights(turn_off([{"backendRefs": [ref("app"), ref("app-canary")]}])[0]) == [2, 0]
    new, _, _ = turn_off([{"backendRefs": [ref("app", 0), ref("app-canary", 100)]}])
    assert weights(new) == [100, 0]


def test_several_stable_backends_share_in_proportion_and_the_total_is_kept() -> None:
    rules = [{"backendRefs": [ref("a", 30), ref("app-canary", 10), ref("b", 60)]}]
    new, _, _ = turn_off(rules)
    assert weights(new) == [33, 0, 67] and sum(weights(new)) == 100  # type: ignore[arg-type]


def test_only_rules_routing_to_the_canary_change() -> None:
    rules = [
        {"matches": [{"path": {"value": "/api"}}], "backendRefs": [ref("app", 80), ref("app-canary", 20)]},
        {"backendRefs": [ref("other", 5)]},
    ]
    new, before, _ = turn_off(rules)
    assert new[1] == rules[1] and new[0]["matches"] == rules[0]["matches"]
    assert [entry["rule"] for entry in before] == [0] and canary_rules(rules, backend="app-canary", namespace=NS) == [0]


def test_a_backend_of_another_kind_or_namespace_is_not_the_canary() -> None:
    rules = [
        {
            "backendRefs": [
                ref("app", 50),
                ref("app-canary", 25, namespace="elsewhere"),
                ref("app-canary", 25, kind="ServiceImport", group="multicluster.x-k8s.io"),
            ]
        }
    ]
    with pytest.raises(RouteProblem, match="no backendRef"):
        turn_canary_off(rules, backend="app-canary", namespace=NS)


def test_a_header_rule_routing_only_to_the_canary_is_pointed_at_the_stable_service() -> None:
    """Issue 18: the header-canary pattern (Argo Rollouts' header routing) could not be rolled back at all."""
    header = {"matches": [{"headers": [{"name": "X-Canary", "value": "always"}]}], "backendRefs": [ref("app-canary")]}
    rules = [header, {"backendRefs": [ref("app", 90), ref("app-canary", 10)]}]
    new, before, after = turn_off(rules)
    assert new[0]["backendRefs"] == [{"name": "app", "port": 80, "weight": 1}, {**ref("app-canary"), "weight": 0}]
    assert new[0]["matches"] == header["matches"]
    assert weights(new, 1) == [100, 0]
    assert canary_is_off(new, backend="app-canary", namespace=NS)
    assert turn_off(new)[0] == new  # a second rollback changes nothing
    assert apply_snapshot(new, before) == rules  # the added backendRef goes again; unset weights stay unset
    assert snapshot(new, [0, 1]) == after


def test_the_stable_backend_option_names_the_service_when_no_other_rule_does() -> None:
    rules = [{"backendRefs": [ref("app-canary", 5, port=8080)]}]
    new, stuck = turn_canary_off(rules, backend="app-canary", namespace=NS)
    assert (new, stuck) == (rules, [0])  # nowhere to send it: left as it is, and reported
    new, before, _ = turn_off(rules, stable="app")
    assert new[0]["backendRefs"] == [
        {"name": "app", "port": 8080, "weight": 5},
        {**rules[0]["backendRefs"][0], "weight": 0},
    ]
    assert apply_snapshot(new, before) == rules


def test_a_rule_that_cannot_be_turned_off_does_not_stop_the_others() -> None:
    rules = [
        {"backendRefs": [ref("app-canary", 10)]},
        {"backendRefs": [ref("a", 50), ref("app-canary", 50)]},
        {"backendRefs": [ref("b", 50)]},
    ]
    new, stuck = turn_canary_off(rules, backend="app-canary", namespace=NS)  # two other Services: which one?
    assert stuck == [0] and new[0] == rules[0] and weights(new, 1) == [100, 0] and new[2] == rules[2]


def test_already_off_is_detected() -> None:
    assert canary_is_off([{"backendRefs": [ref("app", 100), ref("app-canary", 0)]}], backend="app-canary", namespace=NS)
    assert not canary_is_off(
        [{"backendRefs": [ref("app", 100), ref("app-canary")]}], backend="app-canary", namespace=NS
    )


def test_apply_snapshot_restores_exactly_including_unset_weights() -> None:
    rules = [{"backendRefs": [ref("app"), ref("app-canary", 10)]}]
    new, before, _ = turn_off(rules)
    assert apply_snapshot(new, before) == rules


def test_apply_snapshot_refuses_a_changed_route() -> None:
    rules = [{"backendRefs": [ref("app", 90), ref("app-canary", 10)]}]
    _, before, _ = turn_off(rules)
    with pytest.raises(RouteProblem, match="changed"):
        apply_snapshot([{"backendRefs": [ref("app-v2", 100)]}], before)


@given(
    stable=st.lists(st.one_of(st.none(), st.integers(0, 1000)), min_size=1, max_size=4),
    canary=st.one_of(st.none(), st.integers(0, 1000)),
)
def test_properties_total_kept_canary_zero_and_reversible(stable: list[int | None], canary: int | None) -> None:
    refs = [ref(f"s{i}", w) for i, w in enumerate(stable)] + [ref("app-canary", canary)]
    rules = [{"backendRefs": refs}]
    new, before, after = turn_off(rules)
    effective = [1 if w is None else w for w in [*stable, canary]]
    new_weights = [1 if r.get("weight") is None else r["weight"] for r in new[0]["backendRefs"]]
    assert new_weights[-1] == 0 or sum(effective) == 0 or effective[-1] == 0
    assert sum(new_weights) == sum(effective)
    assert canary_is_off(new, backend="app-canary", namespace=NS) or effective[-1] == 0
    assert snapshot(new, [0]) == after
    assert apply_snapshot(new, before) == rules


@given(
    header=st.one_of(st.none(), st.integers(0, 1000)),
    stable=st.one_of(st.none(), st.integers(0, 1000)),
    canary=st.one_of(st.none(), st.integers(0, 1000)),
)
def test_properties_with_a_header_rule_each_rule_keeps_its_total_and_it_all_goes_back(
    header: int | None, stable: int | None, canary: int | None
) -> None:
    rules = [
        {"backendRefs": [ref("app-canary", header)]},
        {"backendRefs": [ref("app", stable), ref("app-canary", canary)]},
    ]
    new, before, _ = turn_off(rules)
    for i, rule in enumerate(rules):
        old_total = sum(1 if r.get("weight") is None else r["weight"] for r in rule["backendRefs"])
        assert sum(1 if r.get("weight") is None else r["weight"] for r in new[i]["backendRefs"]) == old_total
    assert canary_is_off(new, backend="app-canary", namespace=NS)
    assert apply_snapshot(new, before) == rules
