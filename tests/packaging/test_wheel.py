"""What the Dockerfile does, done without a container engine (none runs on these machines).

The build stage copies pyproject.toml, README.md and responder/ and runs `pip wheel`; the runtime stage installs
that wheel into a clean Python and runs `canary-responder`. Here: the same three inputs copied into a scratch
directory, `pip wheel` there, a fresh venv with only the wheel (and its dependencies from the package index),
then `canary-responder --version` and `check-config --skip-secrets` from that venv. The Dockerfile's facts that
matter to Kubernetes are checked against the chart: numeric USER equal to the chart's runAsUser, exec-form
ENTRYPOINT/CMD equal to the chart's command/args, multi-stage, no compiler in the final stage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|build-essential|make|python3?-dev|libc6?-dev)\b")


def _stages(text: str) -> list[list[str]]:
    """Dockerfile instructions (continuations joined, comments dropped), grouped by stage."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[str]] = []
    for instruction in logical:
        if instruction.upper().startswith("FROM "):
            stages.append([])
        assert stages, f"instruction before FROM: {instruction}"
        stages[-1].append(instruction)
    return stages


def _instruction(stage: list[str], name: str) -> list[str]:
    return [i.split(None, 1)[1] for i in stage if i.split(None, 1)[0].upper() == name]


def _chart_values() -> dict[str, object]:
    values: dict[str, object] = yaml.safe_load((ROOT / "helm-chart" / "values.yaml").read_text())
    return values


def test_dockerfile_facts() -> None:
    stages = _stages(DOCKERFILE.read_text())
    assert len(stages) >= 2, "multi-stage: build the wheel in one stage, run it in another"
    build, final = stages[0], stages[-1]
    assert any("pip wheel" in run or "-m build" in run for run in _instruction(build, "RUN"))
    assert _instruction(final, "FROM")[0].split()[0] == "python:3.11-slim"
    # Only the wheel(s) built in the first stage are installed: --no-index, from the build stage.
    (install,) = [run for run in _instruction(final, "RUN") if "pip install" in run]
    assert "--no-index" in install and "from=build" in install
    for run in _instruction(final, "RUN"):
        assert not COMPILERS.search(run), f"compiler in the final stage: {run}"
        assert "apt-get install" not in run
    # Numeric USER, the same as the chart's runAsUser (Kubernetes' runAsNonRoot can only verify a number).
    (user,) = _instruction(final, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and (not gid or gid.isdigit())
    security = _chart_values()["podSecurity"]
    assert isinstance(security, dict)
    assert int(uid) == security["runAsUser"] and (not gid or int(gid) == security["runAsGroup"])
    # Exec form (JSON arrays): signals reach the process, no shell in between.
    (entrypoint,) = _instruction(final, "ENTRYPOINT")
    (cmd,) = _instruction(final, "CMD")
    assert json.loads(entrypoint) == ["canary-responder"]
    assert json.loads(cmd) == ["serve", "--config", "/etc/canary-responder/config.yaml"]
    deployment = (ROOT / "helm-chart" / "templates" / "deployment.yaml").read_text()
    assert 'command: ["canary-responder"]' in deployment
    assert 'args: ["serve", "--config", "{{ include "cr.configDir" . }}/config.yaml"]' in deployment
    # What the build stage copies is exactly what .dockerignore lets through.
    copied = {p for c in _instruction(build, "COPY") for p in c.split()[:-1] if not p.startswith("--")}
    assert copied == {"pyproject.toml", "README.md", "responder"}
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("**") :].count("!responder/") == 1 and "!pyproject.toml" in ignore


@pytest.mark.slow
def test_wheel_builds_installs_and_runs(tmp_path: Path) -> None:
    # The build context: the same files the Dockerfile copies, so nothing else can leak into the wheel.
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", context)
    shutil.copy2(ROOT / "README.md", context)
    shutil.copytree(ROOT / "responder", context / "responder", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), str(context)],
        check=True,
        env=env,
        timeout=600,
    )
    (wheel,) = wheels.glob("canary_responder-*.whl")
    # A clean venv (no system site-packages, not the project venv) with the wheel and its dependencies only.
    runtime = tmp_path / "runtime"
    venv.EnvBuilder(with_pip=True, clear=True).create(runtime)
    python = runtime / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, env=env, timeout=600)
    cli = runtime / "bin" / "canary-responder"
    from responder import __version__

    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert version.stdout.strip() == f"canary-responder {__version__}"
    checked = subprocess.run(
        [str(cli), "check-config", "--skip-secrets", str(ROOT / "examples" / "config.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stderr
    assert "allowed namespaces: shop" in checked.stdout
    # The package came from the wheel, not from the source tree.
    where = subprocess.run(
        [str(python), "-c", "import responder; print(responder.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert where.stdout.strip().startswith(str(runtime))
    # serve starts and fails cleanly on a missing config (the image's CMD path without the ConfigMap mounted).
    serve = subprocess.run(
        [str(cli), "serve", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=60
    )
    assert serve.returncode == 2 and "cannot read" in serve.stderr
