"""Issue 14: ``canary-responder demo`` as a new user runs it. A second run in the same --workdir starts clean and
reports its own results, never another run's; the output says in words what to check; the temporary directory is
named and removed unless kept."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from support import responder_command

pytestmark = pytest.mark.slow


async def demo(*args: str) -> tuple[int, str]:
    env = {**os.environ, "CHROMIUM": "/nonexistent"}  # no screenshot: not what these tests are about
    code, out, _ = await responder_command("demo", *args, env=env, merge_stderr=True)
    return code, out


def section(out: str, title: str) -> str:
    start = out.index(title)
    end = out.find("\n== ", start + len(title))
    return out[start : end if end != -1 else None]


def scale_patches(out: str) -> list[str]:
    return re.findall(r"PATCH\s+\S+/deployments/(\S+)/scale", section(out, "== Mutating calls"))


async def test_a_second_run_in_the_same_workdir_starts_clean_and_reports_its_own_results(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    code, first = await demo("--workdir", str(workdir))
    assert code == 0, first
    assert sorted(scale_patches(first)) == ["checkout-canary", "payments-canary"]
    code, second = await demo("--workdir", str(workdir))
    assert code == 0, second
    assert "previous run" in second  # it says it started clean
    assert sorted(scale_patches(second)) == ["checkout-canary", "payments-canary"], second  # it acted again
    assert "rollbacks done: 2" in second


async def test_the_output_says_what_to_check_in_words_and_the_temporary_directory_goes(tmp_path: Path) -> None:
    code, out = await demo()
    assert code == 0, out
    for name in ("checkout-canary", "payments-canary"):
        assert re.search(
            rf"shop/{name}: canary traffic was turned off before the scale-down"
            r" \(PATCH ingress at t\+\d+ ms, PATCH scale at t\+\d+ ms\)",
            out,
        ), out
    assert "search-canary: left alone" in out
    events = [line for line in section(out, "== Mutating calls").splitlines() if "/events" in line]
    assert events and all("Deployment shop/" in line for line in events), events
    found = re.search(r"files in (\S+) \(removed at the end", out)
    assert found, out
    assert not Path(found.group(1)).exists()


async def test_keep_keeps_the_temporary_directory(tmp_path: Path) -> None:
    code, out = await demo("--keep")
    assert code == 0, out
    found = re.search(r"files in (\S+) \(kept", out)
    assert found and Path(found.group(1), "responder.db").exists(), out
    for child in sorted(Path(found.group(1)).rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    Path(found.group(1)).rmdir()
