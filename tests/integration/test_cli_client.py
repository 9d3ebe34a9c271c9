"""The operator CLI as a user runs it: a separate process talking to a running server; output and exit codes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from support import ADMIN_TOKEN, READ_TOKEN, alert, notification, running_responder, write_config

from responder.testing.emulator import Emulator

pytestmark = pytest.mark.slow


async def cli(url: str, token: str, *args: str, tmp_path: Path) -> tuple[int, str, str]:
    token_file = tmp_path / f"token-{abs(hash(token))}"
    token_file.write_text(token)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "responder",
        *args,
        "--token-file",
        str(token_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CANARY_RESPONDER_URL": url},
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_operator_commands(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, kube_url = cluster
    async with running_responder(write_config(tmp_path, kube_url=kube_url)) as running:
        url = running.url
        code, out, _ = await cli(url, READ_TOKEN, "status", tmp_path=tmp_path)
        assert code == 0 and "paused: no" in out

        code, out, _ = await cli(url, ADMIN_TOKEN, "pause", "--reason", "freeze", "--actor", "dave", tmp_path=tmp_path)
        assert code == 0 and out.startswith("PAUSED") and "dave" in out
        code, out, _ = await cli(url, READ_TOKEN, "status", tmp_path=tmp_path)
        assert "paused: yes, by dave: freeze" in out
        code, out, _ = await cli(url, ADMIN_TOKEN, "resume", tmp_path=tmp_path)
        assert code == 0 and out.startswith("RESUMED")

        await running.post_alerts(notification(alert()))
        await running.services.engine.drain()
        code, out, _ = await cli(url, ADMIN_TOKEN, "replay", "--notification-id", "1", "--force", tmp_path=tmp_path)
        assert code == 0 and out.startswith("DRY RUN") and "ROLLBACK" in out and "--execute" in out

        code, out, _ = await cli(url, ADMIN_TOKEN, "restore", "shop", "checkout-canary", tmp_path=tmp_path)
        assert code == 0 and "RESTORED" in out, out
        code, out, _ = await cli(url, ADMIN_TOKEN, "restore", "shop", "checkout-canary", tmp_path=tmp_path)
        assert code == 1 and "REFUSED" in out

        code, out, _ = await cli(url, READ_TOKEN, "audit", "verify", "--server", url, tmp_path=tmp_path)
        assert code == 0 and "audit chain OK" in out
        code, out, _ = await cli(url, READ_TOKEN, "audit", "list", "--kind", "restore.result", tmp_path=tmp_path)
        assert code == 0 and "restore.result" in out

        code, _, err = await cli(url, READ_TOKEN, "pause", tmp_path=tmp_path)
        assert code == 4 and "403" in err
        code, _, err = await cli(url, "not-a-token", "status", tmp_path=tmp_path)
        assert code == 4 and "401" in err
    code, _, err = await cli("http://127.0.0.1:9", READ_TOKEN, "status", tmp_path=tmp_path)
    assert code == 3 and "cannot talk to" in err
    assert ADMIN_TOKEN not in err
