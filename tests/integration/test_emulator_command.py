"""Issue 14: ``canary-responder emulator --kubeconfig FILE`` runs the Kubernetes API emulator on its own, writes a
kubeconfig for it and says how to point ``serve`` at it; the responder's own ``check-config --probe`` reaches it
through that kubeconfig. The real commands, as processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from support import write_config

pytestmark = pytest.mark.slow


async def test_the_standalone_emulator_serves_the_sample_apps_through_its_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "emulator.kubeconfig"
    out = tmp_path / "emulator.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "responder", "emulator", "--kubeconfig", str(kubeconfig)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(200):
            if "Ctrl-C" in out.read_text():
                break
            assert process.poll() is None, out.read_text()
            await asyncio.sleep(0.05)
        text = out.read_text()
        assert f"kubernetes: {{mode: kubeconfig, kubeconfig: {kubeconfig}}}" in text
        url = text.split("Kubernetes API emulator on ", 1)[1].split()[0]
        async with aiohttp.ClientSession() as session:
            found = await session.get(f"{url}/apis/apps/v1/namespaces/shop/deployments/checkout-canary")
            assert found.status == 200 and (await found.json())["metadata"]["labels"]["version"] == "canary"
        config = write_config(tmp_path, kubernetes={"mode": "kubeconfig", "kubeconfig": str(kubeconfig)})
        check = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "responder", "check-config", str(config), "--probe", stdout=asyncio.subprocess.PIPE
        )
        stdout, _ = await check.communicate()
        assert check.returncode == 0 and "probe kubernetes: OK" in stdout.decode(), stdout.decode()
    finally:
        process.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(process.wait, 20)
    assert code == 0 and "emulator stopped" in out.read_text()
