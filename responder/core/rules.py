"""Target mapping and policy rules: how an alert's labels name a canary and what the alert may cause.

Both are first-match lists keyed on exact label values, so a reader of the configuration can predict the
outcome for any alert without running the program. Name templates use ``{label}`` placeholders only.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from responder.core.model import PolicyMode, TargetRef

# RFC 1123 label (namespaces) and subdomain (object names), as the API server validates them.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_dns_label(value: str) -> bool:
    return bool(_DNS_LABEL.match(value))


def is_dns_subdomain(value: str) -> bool:
    return bool(_DNS_SUBDOMAIN.match(value))


@functools.lru_cache(maxsize=1024)
def template_fields(template: str) -> tuple[str, ...]:
    """The label names a template refers to; raises ValueError for anything but plain ``{name}`` fields."""
    names: list[str] = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or spec or conversion or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"only plain {{label}} placeholders are allowed, got {template!r}")
        names.append(name)
    return tuple(names)


def render(template: str, labels: Mapping[str, str]) -> str | None:
    """Fill ``{label}`` placeholders from labels; None when a label is missing or empty."""
    values: dict[str, str] = {}
    for name in template_fields(template):
        value = labels.get(name, "")
        if not value:
            return None
        values[name] = value
    return template.format(**values)


def matches(match: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in match.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetRule:
    name: str
    match: Mapping[str, str] = field(default_factory=dict)
    namespace: str
    deployment: str
    ingress: str | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    target: TargetRef
    rule: str


@dataclass(frozen=True, slots=True)
class Unresolved:
    reason: str


def resolve_target(
    rules: tuple[TargetRule, ...], labels: Mapping[str, str], allowed_namespaces: frozenset[str]
) -> Resolved | Unresolved:
    """Map alert labels to a canary target, or say precisely why not."""
    for rule in rules:
        if not matches(rule.match, labels):
            continue
        return _render_rule(rule, labels, allowed_namespaces)
    return Unresolved("no target rule matches the alert labels")


def _render_rule(rule: TargetRule, labels: Mapping[str, str], allowed: frozenset[str]) -> Resolved | Unresolved:
    namespace = render(rule.namespace, labels)
    deployment = render(rule.deployment, labels)
    ingress = render(rule.ingress, labels) if rule.ingress else None
    if namespace is None or deployment is None or (rule.ingress and ingress is None):
        return Unresolved(f"target rule {rule.name!r}: a label its name templates need is missing")
    if not is_dns_label(namespace) or not is_dns_subdomain(deployment):
        return Unresolved(f"target rule {rule.name!r}: rendered names are not valid Kubernetes names")
    if ingress is not None and not is_dns_subdomain(ingress):
        return Unresolved(f"target rule {rule.name!r}: rendered ingress name is not a valid Kubernetes name")
    if namespace not in allowed:
        return Unresolved(f"namespace {namespace!r} is not in the allowlist")
    return Resolved(TargetRef(namespace=namespace, deployment=deployment, ingress=ingress), rule.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRule:
    name: str
    match: Mapping[str, str] = field(default_factory=dict)
    mode: PolicyMode
    persist_for: timedelta = timedelta(0)


DEFAULT_POLICY = PolicyRule(name="default", mode=PolicyMode.NOTIFY)


def select_policy(rules: tuple[PolicyRule, ...], labels: Mapping[str, str]) -> PolicyRule:
    """First matching rule wins; an alert no rule matches only notifies (never acts by accident)."""
    for rule in rules:
        if matches(rule.match, labels):
            return rule
    return DEFAULT_POLICY
