"""Name and duration validators match the whole string: in Python's ``re``, ``$`` also matches before a trailing
newline, so ``"checkout\\n"`` once passed as a Kubernetes name."""

from __future__ import annotations

from datetime import timedelta

import pytest

from responder.config import ConfigError, parse_settings
from responder.core.rules import TargetRule, Unresolved, is_dns_label, is_dns_subdomain, resolve_target

TRAILING = ["abc\n", "abc\r\n", "abc\n\n", "\nabc", "abc\x00", "abc "]


@pytest.mark.parametrize("value", TRAILING)
def test_a_trailing_newline_is_not_a_dns_label(value: str) -> None:
    assert is_dns_label("abc") and not is_dns_label(value)


@pytest.mark.parametrize("value", [*TRAILING, "a.b\n", "a" * 253 + "\n"])
def test_a_trailing_newline_is_not_a_dns_subdomain(value: str) -> None:
    assert is_dns_subdomain("abc") and is_dns_subdomain("a.b") and not is_dns_subdomain(value)


def test_subdomain_length_is_counted_without_a_newline() -> None:
    assert is_dns_subdomain("a" * 253) and not is_dns_subdomain("a" * 254)


def test_an_alert_label_with_a_newline_names_no_target() -> None:
    rule = TargetRule(name="r", namespace="{namespace}", deployment="{app}-canary")
    for labels in ({"namespace": "shop\n", "app": "checkout"}, {"namespace": "shop", "app": "checkout\n"}):
        found = resolve_target((rule,), labels, frozenset({"shop", "shop\n"}))
        assert isinstance(found, Unresolved) and "not valid Kubernetes names" in found.reason, labels


def document(**extra: object) -> dict[str, object]:
    return {
        "auth": {"webhook": {"bearer_tokens": [{"env": "T"}]}, "admin_token": {"env": "A"}},
        "safety": {"allowed_namespaces": ["shop"]},
        "targets": [{"name": "shop"}],
        **extra,
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"safety": {"allowed_namespaces": ["shop\n"]}},
        {"clusters": {"east\n": {"kubernetes": {"mode": "url", "url": "http://127.0.0.1:9"}}}},
        {"cooldown": "15m\n\n15m"},
    ],
    ids=["namespace", "cluster", "duration"],
)
def test_config_names_and_durations_with_a_newline_are_refused(extra: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_settings(document(**extra))


def test_durations_still_parse() -> None:
    assert parse_settings(document(cooldown=" 15m\n")).cooldown == timedelta(minutes=15)  # YAML block scalars
