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

from responder.core.model import AlertEvent, AlertStatus, PolicyMode, TargetRef, TrafficRef

# RFC 1123 label (namespaces) and subdomain (object names), as the API server validates them. Always
# ``fullmatch``: with ``match`` and ``$``, Python also accepts a trailing newline ("checkout\n").
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_dns_label(value: str) -> bool:
    return _DNS_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: str) -> bool:
    return _DNS_SUBDOMAIN.fullmatch(value) is not None


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


@dataclass(frozen=True, slots=True)
class TrafficTemplate:
    """One traffic object of a target rule: its switch ``kind``, its name template and its option templates."""

    kind: str
    name: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetRule:
    name: str
    match: Mapping[str, str] = field(default_factory=dict)
    namespace: str
    deployment: str
    traffic: tuple[TrafficTemplate, ...] = ()  # turned off in this order, before the scale-down
    clusters: tuple[str, ...] = ()  # multi-cluster: the clusters this rule applies to; empty: all of them
    stable: str = ""  # the stable Deployment's name template ("": no stable-health guard)
    delegate: str = ""  # "flagger": decide only; Flagger rolls back when its rollback webhook asks the gate


@dataclass(frozen=True, slots=True)
class Resolved:
    target: TargetRef
    rule: str


@dataclass(frozen=True, slots=True)
class Unresolved:
    reason: str


def resolve_target(
    rules: tuple[TargetRule, ...],
    labels: Mapping[str, str],
    allowed_namespaces: frozenset[str],
    *,
    clusters: Mapping[str, frozenset[str]] | None = None,
    cluster_label: str = "cluster",
) -> Resolved | Unresolved:
    """Map alert labels to a canary target, or say precisely why not.

    With ``clusters`` (multi-cluster: name -> that cluster's namespace allowlist) the alert's ``cluster_label``
    must name one of them; only rules listing that cluster (or listing none) apply, and the namespace must be in
    that cluster's allowlist. Without it (single cluster) the target has cluster "" and ``allowed_namespaces``.
    """
    cluster = ""
    if clusters:
        cluster = labels.get(cluster_label, "")
        if cluster not in clusters:
            shown = repr(cluster) if cluster else "none"
            return Unresolved(f"unknown cluster: label {cluster_label!r} is {shown}, not a configured cluster")
        allowed_namespaces = clusters[cluster]
    for rule in rules:
        if not matches(rule.match, labels) or (cluster and rule.clusters and cluster not in rule.clusters):
            continue
        return _render_rule(rule, labels, allowed_namespaces, cluster=cluster)
    where = f" in cluster {cluster!r}" if cluster else ""
    return Unresolved(f"no target rule matches the alert labels{where}")


_OPTION_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,252}")


def _render_traffic(template: TrafficTemplate, labels: Mapping[str, str]) -> TrafficRef | str:
    """The rendered reference, or what is wrong with it."""
    name = render(template.name, labels)
    if name is None or not is_dns_subdomain(name):
        return f"rendered {template.kind} name is missing or invalid"
    options = []
    for key, value_template in template.options:
        value = render(value_template, labels)
        if value is None or not _OPTION_VALUE.fullmatch(value):
            return f"rendered {template.kind} option {key!r} is missing or invalid"
        options.append((key, value))
    return TrafficRef(template.kind, name, tuple(sorted(options)))


def _render_rule(
    rule: TargetRule, labels: Mapping[str, str], allowed: frozenset[str], *, cluster: str
) -> Resolved | Unresolved:
    namespace = render(rule.namespace, labels)
    deployment = render(rule.deployment, labels)
    if namespace is None or deployment is None:
        return Unresolved(f"target rule {rule.name!r}: a label its name templates need is missing")
    if not is_dns_label(namespace) or not is_dns_subdomain(deployment):
        return Unresolved(f"target rule {rule.name!r}: rendered names are not valid Kubernetes names")
    traffic: list[TrafficRef] = []
    for template in rule.traffic:
        ref = _render_traffic(template, labels)
        if isinstance(ref, str):
            return Unresolved(f"target rule {rule.name!r}: {ref}")
        traffic.append(ref)
    if namespace not in allowed:
        where = f" of cluster {cluster!r}" if cluster else ""
        return Unresolved(f"namespace {namespace!r} is not in the allowlist{where}")
    stable = render(rule.stable, labels) if rule.stable else None
    stable = stable if stable and is_dns_subdomain(stable) and stable != deployment else ""
    target = TargetRef(
        namespace=namespace,
        deployment=deployment,
        traffic=tuple(traffic),
        cluster=cluster,
        stable=stable,
        delegate=rule.delegate,
    )
    return Resolved(target, rule.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRule:
    name: str
    match: Mapping[str, str] = field(default_factory=dict)
    mode: PolicyMode
    persist_for: timedelta = timedelta(0)


DEFAULT_POLICY = PolicyRule(name="unmatched", mode=PolicyMode.IGNORE)


def acts_at_once(rules: tuple[PolicyRule, ...], event: AlertEvent) -> bool:
    """Whether an event may start a rollback as soon as it is decided: a firing alert under an ``immediate``
    policy. The engine decides such events ahead of the rest of its queue."""
    return event.status is AlertStatus.FIRING and select_policy(rules, event.labels).mode is PolicyMode.IMMEDIATE


def select_policy(rules: tuple[PolicyRule, ...], labels: Mapping[str, str]) -> PolicyRule:
    """First matching rule wins; an alert no rule matches is only recorded: it never acts by accident, and other
    teams' alerts that reach the responder do not page anyone through it."""
    for rule in rules:
        if matches(rule.match, labels):
            return rule
    return DEFAULT_POLICY
