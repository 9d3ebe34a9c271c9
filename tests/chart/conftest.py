"""Fixtures for the Helm chart tests: the chart tool venv, rendering, lint and kubernetes-validate.

The tools (helm-sdkpy needs Python >= 3.12) live in `.tool-venv/`, made by `scripts/chart-check.sh --setup`;
these tests create it when it is missing and are skipped, saying why, only when it cannot be created.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm-chart"
HERE = Path(__file__).resolve().parent
TOOL_VENV = Path(os.environ.get("TOOL_VENV", ROOT / ".tool-venv"))
if not TOOL_VENV.is_absolute():
    TOOL_VENV = ROOT / TOOL_VENV
NAMESPACE = "ops"
RELEASE = "canary-responder"


@dataclass
class Rendered:
    """One `helm install` into the emulator: the parsed objects, the raw manifest and NOTES.txt."""

    manifest: str
    notes: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
        return found[0]


class HelmFailed(Exception):
    pass


@pytest.fixture(scope="session")
def tool_python() -> Path:
    python = TOOL_VENV / "bin" / "python"
    setup = subprocess.run(
        ["bash", str(ROOT / "scripts" / "chart-check.sh"), "--setup"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TOOL_VENV": str(TOOL_VENV)},
    )
    if setup.returncode != 0 or not python.exists():
        pytest.skip(
            f"the chart tool venv {TOOL_VENV} could not be created (needs Python >= 3.12 and PyPI): "
            f"{(setup.stderr or setup.stdout).strip()[-500:]}"
        )
    return python


def _helm_env() -> dict[str, str]:
    env = dict(os.environ)
    env["HELM_DRIVER"] = "memory"  # read by the Go runtime at load time: must be set before the process starts
    env["HOME"] = tempfile.mkdtemp(prefix="helm-home-")
    env.pop("KUBECONFIG", None)
    return env


def run_helm_tool(tool_python: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(tool_python), str(HERE / "helm_tool.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=_helm_env(),
    )
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise AssertionError(f"helm_tool.py {args} failed: rc={proc.returncode}\n{proc.stderr[-3000:]}") from None
    return result


@pytest.fixture(scope="session")
def render(tool_python: Path) -> Callable[..., Rendered]:
    cache: dict[tuple[str | None, str], Rendered] = {}

    def _render(values: Path | None = None, *, namespace: str = NAMESPACE) -> Rendered:
        key = (str(values) if values else None, namespace)
        if key not in cache:
            args = ["render", str(CHART), "--namespace", namespace, "--release", RELEASE]
            if values is not None:
                args += ["--values", str(values)]
            result = run_helm_tool(tool_python, *args)
            if not result["ok"]:
                raise HelmFailed(result["error"])
            objects = [doc for doc in yaml.safe_load_all(result["manifest"]) if doc]
            cache[key] = Rendered(manifest=result["manifest"], notes=result["notes"], objects=objects)
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def lint(tool_python: Path) -> Callable[[], dict[str, Any]]:
    return lambda: run_helm_tool(tool_python, "lint", str(CHART))


@pytest.fixture(scope="session")
def kube_validate(tool_python: Path) -> Callable[[str], subprocess.CompletedProcess[str]]:
    binary = tool_python.parent / "kubernetes-validate"

    def _validate(manifest: str) -> subprocess.CompletedProcess[str]:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            handle.write(manifest)
        try:
            return subprocess.run(
                [str(binary), "--strict", "--quiet", handle.name], capture_output=True, text=True, timeout=300
            )
        finally:
            os.unlink(handle.name)

    return _validate


@pytest.fixture(scope="session")
def responder_cli() -> Path:
    """The project's own CLI (the venv running these tests), for check-config on rendered configs."""
    cli = Path(sys.executable).parent / "canary-responder"
    if not cli.exists():
        pytest.fail(f"canary-responder is not installed in {sys.prefix}: pip install -e .")
    return cli
