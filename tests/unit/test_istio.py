"""The Istio VirtualService switch (pure), on VirtualService JSON as the API serves it: no HTTP route sends
anything to the canary afterwards, weights keep their totals, canary-only routes go to stable, and back."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from responder.config.settings import TrafficSettings
from responder.core.model import TrafficRef
from responder.traffic import SwitchProblem, kinds, merged, switch_for
from responder.traffic.istio import IstioVirtualService

NS = "shop"


def dest(host: str, weight: int | None = None, *, subset: str | None = None, port: int | None = 80) -> dict[str, Any]:
    destination: dict[str, Any] = {"host": host}
    if subset is not None:
        destination["subset"] = subset
    if port is not None:
        destination["port"] = {"number": port}
    found: dict[str, Any] = {"destination": destination}
    if weight is not None:
        found["weight"] = weight
    return found


def header_route(*dests: dict[str, Any], name: str = "canary-by-header") -> dict[str, Any]:
    return {"name": name, "match": [{"headers": {"x-canary": {"exact": "always"}}}], "route": list(dests)}


def cookie_route(*dests: dict[str, Any]) -> dict[str, Any]:
    return {"name": "canary-by-cookie", "match": [{"headers": {"cookie": {"regex": "^(.*?;)?(canary=yes)(;.*)?$"}}}],
            "route": list(dests)}  # fmt: skip


def virtual_service(*routes: dict[str, Any], name: str = "checkout") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "41", "generation": 3},
        "spec": {"hosts": ["checkout.example.com"], "gateways": ["istio-ingress/public"], "http": list(routes)},
    }


def switch(**options: str) -> IstioVirtualService:
    chosen = options or {"canary_host": "checkout-canary"}
    found = switch_for(TrafficRef("istio", "checkout", tuple(sorted(chosen.items()))), namespace=NS)
    assert isinstance(found, IstioVirtualService)
    return found


def off(body: dict[str, Any], **options: str) -> dict[str, Any]:
    """The VirtualService as it is once the switch's merge patch has landed."""
    return merged(body, switch(**options).turn_off(body))


def weights(body: dict[str, Any], route: int = 0) -> list[int | None]:
    return [d.get("weight") for d in body["spec"]["http"][route]["route"]]


def hosts(body: dict[str, Any], route: int = 0) -> list[str]:
    return [d["destination"]["host"] for d in body["spec"]["http"][route]["route"]]


PRIMARY = {"name": "primary", "route": [dest("checkout", 90), dest("checkout-canary", 10)]}


# -- weighted routes --


def test_a_weighted_route_gives_the_canary_weight_to_stable() -> None:
    body = virtual_service(copy.deepcopy(PRIMARY))
    pristine = copy.deepcopy(body)
    patch = switch().turn_off(body)
    assert set(patch) == {"spec"} and set(patch["spec"]) == {"http"}  # the whole list, nothing else
    new = merged(body, patch)
    assert weights(new) == [100, 0] and hosts(new) == ["checkout", "checkout-canary"]
    assert new["spec"]["http"][0]["route"][0]["destination"] == {"host": "checkout", "port": {"number": 80}}
    assert body == pristine  # the input is not modified
    assert new["spec"]["hosts"] == body["spec"]["hosts"] and new["spec"]["gateways"] == body["spec"]["gateways"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([("a", 60), ("b", 30), ("checkout-canary", 10)], [67, 33, 0]),  # 6.67 + 3.33: the remainder to the biggest
        ([("a", 50), ("checkout-canary", 25), ("b", 25)], [67, 0, 33]),
        ([("a", 34), ("b", 33), ("checkout-canary", 33)], [51, 49, 0]),
        ([("a", 0), ("b", 0), ("checkout-canary", 100)], [50, 50, 0]),  # stable all at 0: shared evenly
        ([("a", 0), ("b", 0), ("checkout-canary", 99)], [50, 49, 0]),
    ],
)
def test_three_destinations_share_in_proportion_and_keep_the_total(
    given: list[tuple[str, int]], expected: list[int]
) -> None:
    body = virtual_service({"route": [dest(host, weight) for host, weight in given]})
    new = off(body)
    assert weights(new) == expected and sum(expected) == sum(w for _, w in given)


def test_omitted_weights() -> None:
    # Several destinations: an omitted weight is 0 (Istio ignores it), so the stable one gets the canary's 100.
    new = off(virtual_service({"route": [dest("checkout"), dest("checkout-canary", 100)]}))
    assert weights(new) == [100, 0]
    # A canary with an omitted weight beside others receives nothing: already off, nothing to change.
    quiet = virtual_service({"route": [dest("checkout", 100), dest("checkout-canary")]}, copy.deepcopy(PRIMARY))
    new = off(quiet)
    assert new["spec"]["http"][0] == quiet["spec"]["http"][0] and weights(new, 1) == [100, 0]
    # One destination takes everything whatever its weight: the canary alone, weight omitted, is on.
    alone = virtual_service(header_route(dest("checkout-canary")), copy.deepcopy(PRIMARY))
    assert not switch().is_off(alone)
    assert weights(off(alone)) == [100, 0] and hosts(off(alone)) == ["checkout", "checkout-canary"]


# -- canary-only (header / cookie matched) routes --


def test_a_header_matched_route_to_the_canary_only_is_pointed_at_stable() -> None:
    body = virtual_service(header_route(dest("checkout-canary")), copy.deepcopy(PRIMARY))
    new = off(body)
    header = new["spec"]["http"][0]
    assert header["match"] == body["spec"]["http"][0]["match"] and header["name"] == "canary-by-header"
    assert header["route"] == [
        {"destination": {"host": "checkout", "port": {"number": 80}}, "weight": 100},
        {"destination": {"host": "checkout-canary", "port": {"number": 80}}, "weight": 0},
    ]
    assert weights(new, 1) == [100, 0]
    assert switch().is_off(new)


def test_a_cookie_matched_route_keeps_its_weight_total() -> None:
    body = virtual_service(cookie_route(dest("checkout-canary", 100)), {"route": [dest("checkout")]})
    new = off(body)
    assert hosts(new) == ["checkout", "checkout-canary"] and weights(new) == [100, 0]
    assert new["spec"]["http"][1] == body["spec"]["http"][1]  # the default route, only stable: untouched


def test_flaggers_header_route_with_stable_at_zero_is_a_weighted_route() -> None:
    body = virtual_service(
        header_route(dest("checkout-primary", 0), dest("checkout-canary", 100)),
        {"route": [dest("checkout-primary", 90), dest("checkout-canary", 10)]},
    )
    new = off(body)
    assert weights(new) == [100, 0] and weights(new, 1) == [100, 0]


def test_subset_canaries_find_the_stable_subset_of_the_same_host() -> None:
    body = virtual_service(
        header_route(dest("reviews", subset="canary")),
        {"route": [dest("reviews", 80, subset="stable"), dest("reviews", 20, subset="canary")]},
        {"name": "ratings", "match": [{"uri": {"prefix": "/ratings"}}], "route": [dest("ratings")]},
    )
    new = off(body, canary_subset="canary")
    assert new["spec"]["http"][0]["route"][0] == {
        "destination": {"host": "reviews", "subset": "stable", "port": {"number": 80}},
        "weight": 100,
    }
    assert weights(new, 1) == [100, 0]
    assert new["spec"]["http"][2] == body["spec"]["http"][2]


def test_several_routes_each_turned_off_and_the_others_untouched() -> None:
    static = {"name": "static", "match": [{"uri": {"prefix": "/static"}}], "route": [dest("cdn")]}
    redirect = {"name": "old", "match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/new"}}
    body = virtual_service(
        header_route(dest("checkout-canary")),
        cookie_route(dest("checkout-canary", 100)),
        static,
        redirect,
        copy.deepcopy(PRIMARY),
    )
    new = off(body)
    assert [hosts(new, i) for i in (0, 1, 4)] == [["checkout", "checkout-canary"]] * 3
    assert [weights(new, i) for i in (0, 1, 4)] == [[100, 0]] * 3
    assert new["spec"]["http"][2:4] == [static, redirect]  # a route with no canary is left exactly as it was
    assert switch().is_off(new) and not switch().is_off(body)


def test_a_route_without_the_canary_is_untouched_and_the_canary_is_recognised_by_fqdn() -> None:
    fqdn = "checkout-canary.shop.svc.cluster.local"
    body = virtual_service(
        {"name": "payments", "route": [dest("payments", 70), dest("payments-canary", 30)]},
        {"route": [dest("checkout.shop.svc.cluster.local", 95), dest(fqdn, 5)]},
    )
    new = off(body)
    assert new["spec"]["http"][0] == body["spec"]["http"][0]
    assert weights(new, 1) == [100, 0]


# -- when a canary-only route has no stable destination: the rest is done, the route is reported --


def test_no_stable_destination_leaves_that_route_and_reports_it() -> None:
    body = virtual_service(header_route(dest("checkout-canary")), {"route": [dest("checkout-canary")]})
    switch().check(body)  # not a reason for the whole rollback to do nothing (other objects, the scale-down)
    assert off(body) == body  # the canary-only routes are left as they are: never pointed at a guess
    assert switch().is_off(body)  # nothing more can be done here
    leftover = switch().leftover(body)
    assert leftover is not None and "canary-by-header, #1 of VirtualService checkout" in leftover
    assert "no stable destination is known: set stable_host and/or stable_subset" in leftover
    # The option names it: then it can be done, and nothing is left over.
    new = off(body, canary_host="checkout-canary", stable_host="checkout")
    assert [hosts(new, i) for i in (0, 1)] == [["checkout", "checkout-canary"]] * 2
    assert new["spec"]["http"][0]["route"][0]["destination"] == {"host": "checkout", "port": {"number": 80}}
    assert switch(canary_host="checkout-canary", stable_host="checkout").leftover(new) is None


def test_an_ambiguous_stable_destination_is_reported_not_guessed() -> None:
    body = virtual_service(
        header_route(dest("checkout-canary")),
        {"match": [{"uri": {"prefix": "/a"}}], "route": [dest("checkout-a")]},
        {"match": [{"uri": {"prefix": "/b"}}], "route": [dest("checkout-b")]},
    )
    switch().check(body)
    assert off(body) == body  # never pointed at a guess
    assert "ambiguous (checkout-a, checkout-b)" in (switch().leftover(body) or "")
    assert hosts(off(body, canary_host="checkout-canary", stable_host="checkout-b")) == [
        "checkout-b",
        "checkout-canary",
    ]


def test_a_virtual_service_without_the_canary_fails_the_check() -> None:
    body = virtual_service({"route": [dest("checkout")]})
    with pytest.raises(SwitchProblem, match="no HTTP route"):
        switch().check(body)
    with pytest.raises(SwitchProblem):
        switch().check(virtual_service())


def test_stable_options_naming_the_canary_are_refused() -> None:
    body = virtual_service(header_route(dest("reviews", subset="canary")))
    with pytest.raises(SwitchProblem, match="canary itself"):
        switch(canary_subset="canary", stable_subset="canary").check(body)
    new = off(body, canary_subset="canary", stable_subset="stable")
    assert new["spec"]["http"][0]["route"][0]["destination"] == {
        "host": "reviews",
        "subset": "stable",
        "port": {"number": 80},
    }


# -- is_off, snapshot, restore --


def test_is_off() -> None:
    assert switch().is_off(virtual_service(copy.deepcopy(PRIMARY), name="x")) is False
    assert switch().is_off(virtual_service({"route": [dest("checkout", 100), dest("checkout-canary", 0)]}))
    alone = virtual_service({"route": [dest("checkout-canary", 0)]})  # alone it takes everything, whatever its weight
    assert not switch(canary_host="checkout-canary", stable_host="checkout").is_off(alone)
    assert switch().is_off(alone) and switch().leftover(alone)  # no stable known: nothing more to do, reported
    assert switch().is_off(virtual_service({"route": [dest("checkout")]}))


def test_a_second_turn_off_finds_it_off_and_still_passes_the_check() -> None:
    body = virtual_service(header_route(dest("checkout-canary")), copy.deepcopy(PRIMARY))
    new = off(body)
    assert switch().is_off(new)
    switch().check(new)  # the canary stays named (at weight 0): a second rollback is a NOOP, not a failure
    assert off(new) == new


def test_the_snapshot_is_the_whole_http_list_and_restore_puts_it_back_exactly() -> None:
    body = virtual_service(header_route(dest("checkout-canary")), copy.deepcopy(PRIMARY), {"route": [dest("cdn")]})
    vs = switch()
    before = vs.snapshot(body)
    assert before == {"http": body["spec"]["http"]}
    after_body = off(body)
    after = vs.snapshot(after_body)
    assert after == {"http": after_body["spec"]["http"]} and after != before
    restored = merged(after_body, vs.restore(after_body, before))
    assert restored == body and vs.snapshot(restored) == before
    assert "weight" not in restored["spec"]["http"][0]["route"][0]  # the omitted weight is omitted again


def test_restore_of_a_virtual_service_that_had_no_http_list_removes_it() -> None:
    body = virtual_service()
    del body["spec"]["http"]
    before = switch().snapshot(body)
    assert before == {"http": None}
    later = virtual_service(copy.deepcopy(PRIMARY))
    assert "http" not in merged(later, switch().restore(later, before))["spec"]


# -- facts and summary --


def test_facts_show_each_canary_route_with_its_weights() -> None:
    body = virtual_service(header_route(dest("checkout-canary")), copy.deepcopy(PRIMARY), {"route": [dest("cdn")]})
    assert switch().facts(body) == {
        "routes": [
            {
                "route": 0,
                "name": "canary-by-header",
                "match": True,
                "destinations": [{"host": "checkout-canary", "port": {"number": 80}, "weight": None, "canary": True}],
            },
            {
                "route": 1,
                "name": "primary",
                "match": False,
                "destinations": [
                    {"host": "checkout", "port": {"number": 80}, "weight": 90, "canary": False},
                    {"host": "checkout-canary", "port": {"number": 80}, "weight": 10, "canary": True},
                ],
            },
        ]
    }


def test_the_summary_names_the_routes_that_changed() -> None:
    unnamed = {"route": [dest("checkout", 90), dest("checkout-canary", 10)]}
    body = virtual_service(header_route(dest("checkout-canary")), {"route": [dest("cdn")]}, unnamed)
    vs = switch()
    line = vs.summary(vs.snapshot(body), vs.snapshot(off(body)))
    assert line == (
        "canary checkout-canary off on VirtualService checkout (HTTP route(s) canary-by-header, #2 moved to stable)"
    )
    assert "\n" not in line
    assert "no HTTP route changed" in vs.summary(vs.snapshot(body), vs.snapshot(body))


# -- options --


def test_the_kind_is_registered_with_its_api_and_optional_options() -> None:
    assert kinds()["istio"] is IstioVirtualService
    assert str(IstioVirtualService.api) == "virtualservices.networking.istio.io/v1"
    assert IstioVirtualService.options == {
        "canary_host": False,
        "canary_subset": False,
        "stable_host": False,
        "stable_subset": False,
    }


def test_neither_canary_option_is_a_switch_problem() -> None:
    body = virtual_service(copy.deepcopy(PRIMARY))
    vs = switch_for(TrafficRef("istio", "checkout", (("stable_host", "checkout"),)), namespace=NS)
    for call in (vs.check, vs.is_off, vs.turn_off):
        with pytest.raises(SwitchProblem, match="canary_host and/or canary_subset"):
            call(body)


def test_host_and_subset_together_must_both_match() -> None:
    body = virtual_service(
        {"route": [dest("reviews", 80, subset="v1"), dest("reviews", 10, subset="v2"), dest("other", 10, subset="v2")]}
    )
    assert weights(off(body, canary_host="reviews", canary_subset="v2")) == [89, 0, 11]
    assert weights(off(body, canary_subset="v2")) == [100, 0, 0]


def test_the_configuration_accepts_the_options_and_rejects_others() -> None:
    settings = TrafficSettings.model_validate({"kind": "istio", "name": "{app}", "canary_subset": "canary"})
    assert settings.template().options == (("canary_subset", "canary"),)
    with pytest.raises(ValidationError, match="unknown option"):
        TrafficSettings.model_validate({"kind": "istio", "name": "{app}", "canary_backend": "x"})


def test_the_configuration_refuses_an_istio_target_that_names_no_canary() -> None:
    """Refused when the configuration loads: otherwise the target loads fine and every rollback fails at CHECK."""
    with pytest.raises(ValidationError, match="canary_host and/or canary_subset"):
        TrafficSettings.model_validate({"kind": "istio", "name": "{app}", "stable_host": "checkout"})
    with pytest.raises(ValidationError, match="canary_host and/or canary_subset"):
        TrafficSettings.model_validate({"kind": "istio", "name": "{app}", "canary_host": ""})


# -- properties --


@given(
    stable=st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=4),
    canary=st.integers(min_value=1, max_value=100),
    position=st.integers(min_value=0, max_value=4),
)
def test_weighted_routes_keep_their_total_and_send_the_canary_nothing(
    stable: list[int], canary: int, position: int
) -> None:
    dests = [dest(f"stable-{k}", w) for k, w in enumerate(stable)]
    dests.insert(min(position, len(dests)), dest("checkout-canary", canary))
    body = virtual_service({"route": dests})
    new = off(body)
    found = {d["destination"]["host"]: d["weight"] for d in new["spec"]["http"][0]["route"]}
    assert found.pop("checkout-canary") == 0
    assert sum(found.values()) == sum(stable) + canary > 0
    assert all(found[f"stable-{k}"] >= w for k, w in enumerate(stable))  # stable destinations only gain
    assert switch().is_off(new)
