"""The chart's RBAC for the Istio traffic switch: a target with ``kind: istio`` grants exactly get/patch on
virtualservices.networking.istio.io in every allowed namespace, and nothing for kinds no target uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Rendered

pytestmark = pytest.mark.slow

VIRTUAL_SERVICES = ("networking.istio.io", "virtualservices")
MESH_TARGET = {
    "name": "mesh",
    "namespace": "{namespace}",
    "deployment": "{app}-canary",
    "traffic": [{"kind": "istio", "name": "{app}", "canary_host": "{app}-canary"}],
}


def _rollback_roles(render: Callable[..., Rendered], path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    path.write_text(yaml.safe_dump(values))
    return [r for r in render(path).of_kind("Role") if r["metadata"]["name"].endswith("-rollback")]


def _rights(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    rights: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                rights.setdefault((group, resource), set()).update(rule["verbs"])
    return rights


def test_an_istio_traffic_target_grants_get_and_patch_on_virtualservices(
    render: Callable[..., Rendered], tmp_path: Path
) -> None:
    values = {"config": {"safety": {"allowed_namespaces": ["shop", "pay"]}, "targets": [MESH_TARGET]}}
    roles = _rollback_roles(render, tmp_path / "istio.yaml", values)
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["pay", "shop"]
    for role in roles:
        rights = _rights(role)
        assert rights[VIRTUAL_SERVICES] == {"get", "patch"}
        assert ("networking.k8s.io", "ingresses") not in rights  # least privilege: only the kinds targets use
        assert ("gateway.networking.k8s.io", "httproutes") not in rights
        assert rights[("apps", "deployments")] == {"get"}


def test_virtualservices_are_not_granted_without_an_istio_traffic_target(
    render: Callable[..., Rendered], tmp_path: Path
) -> None:
    [role] = _rollback_roles(render, tmp_path / "plain.yaml", {"config": {"targets": [{"name": "web"}]}})
    assert VIRTUAL_SERVICES not in _rights(role)
    [toggled] = _rollback_roles(render, tmp_path / "toggled.yaml", {"trafficSwitches": {"istio": True}})
    assert _rights(toggled)[VIRTUAL_SERVICES] == {"get", "patch"}
