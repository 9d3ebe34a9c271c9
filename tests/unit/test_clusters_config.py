"""Configuration and decisions for the Gateway API target, multi-cluster targets and GitOps settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from responder.config import ConfigError, parse_settings
from responder.core.decide import DecisionCore
from responder.core.model import AlertEvent, AlertStatus, Outcome, TargetRef, TrafficRef

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def document(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "auth": {"webhook": {"bearer_tokens": [{"env": "T"}]}, "admin_token": {"env": "A"}},
        "safety": {"allowed_namespaces": ["shop"]},
        "targets": [{"name": "t"}],
    }
    base.update(overrides)
    return base


def event(**labels: str) -> AlertEvent:
    all_labels = {"alertname": "CanaryHighErrorRate", "namespace": "shop", "app": "checkout", "action": "rollback"}
    all_labels.update(labels)
    return AlertEvent(
        fingerprint=repr(sorted(all_labels.items())),
        status=AlertStatus.FIRING,
        starts_at=NOW,
        ends_at=None,
        labels=all_labels,
    )


def test_single_cluster_keys_are_unchanged() -> None:
    assert TargetRef("shop", "checkout-canary").key == "shop/checkout-canary"
    assert TargetRef("shop", "checkout-canary", cluster="east").key == "east/shop/checkout-canary"


def test_without_clusters_targets_have_no_cluster_and_the_global_allowlist() -> None:
    settings = parse_settings(document())
    assert settings.cluster_namespaces() is None
    [decision] = DecisionCore(settings.core()).on_event(event(cluster="east"), NOW)
    assert decision.outcome is Outcome.ROLLBACK and decision.target is not None
    assert decision.target.cluster == "" and decision.incident == "shop:checkout-canary:20261127T120000.000000Z"


def test_clusters_inherit_the_global_allowlist_unless_they_have_their_own() -> None:
    settings = parse_settings(
        document(
            clusters={
                "east": {"kubernetes": {"mode": "kubeconfig", "context": "east"}},
                "west": {"kubernetes": {"mode": "url", "url": "https://west:6443"}, "allowed_namespaces": ["pay"]},
            }
        )
    )
    assert settings.cluster_namespaces() == {"east": frozenset({"shop"}), "west": frozenset({"pay"})}
    core = DecisionCore(settings.core())
    [east] = core.on_event(event(cluster="east"), NOW)
    assert east.target == TargetRef(
        "shop", "checkout-canary", (TrafficRef("nginx", "checkout-canary"),), cluster="east", stable="checkout"
    )
    assert east.incident == "east:shop:checkout-canary:20261127T120000.000000Z"
    [west] = core.on_event(event(cluster="west"), NOW)
    assert west.outcome is Outcome.REFUSED and "allowlist of cluster 'west'" in west.reason


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"clusters": {"East": {"kubernetes": {}}}}, "cluster names must be DNS labels"),
        ({"targets": [{"name": "t", "clusters": ["east"]}]}, "names clusters that are not configured"),
        ({"clusters": {"e": {"kubernetes": {}, "allowed_namespaces": []}}}, "must not be empty"),
        ({"targets": [{"name": "t", "httproute": "{app}"}]}, "httproute and canary_backend go together"),
        ({"targets": [{"name": "t", "httproute": "{app}", "canary_backend": "{a!r}"}]}, "placeholders"),
        ({"gitops": {"webhook": {"url": "ftp://x", "secret": {"env": "S"}}}}, "gitops.webhook.url"),
        ({"gitops": {"webhook": {"url": "https://x"}}}, "gitops.webhook.secret"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(document(**overrides))


def test_an_httproute_target_renders_its_route_and_backend() -> None:
    targets = [{"name": "gw", "ingress": None, "httproute": "{app}-route", "canary_backend": "{app}-canary"}]
    [decision] = DecisionCore(parse_settings(document(targets=targets)).core()).on_event(event(), NOW)
    route = TrafficRef("httproute", "checkout-route", (("canary_backend", "checkout-canary"),))
    assert decision.target == TargetRef("shop", "checkout-canary", (route,), stable="checkout")
