"""Issue 14: ``serve`` binds before it says it is ready, says in one line where it listens, which Kubernetes API
it uses and how it acts; a port in use is one clear line and exit code 1; shutdown is logged. The real command,
as a process, against the Kubernetes API emulator."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
from support import free_port, start_server, wait_healthy, write_config

from responder.testing.emulator import Emulator

pytestmark = pytest.mark.slow


def config_on(tmp_path: Path, kube_url: str, port: int, **extra: object) -> Path:
    return write_config(tmp_path, kube_url=kube_url, listen={"host": "127.0.0.1", "port": port}, **extra)


async def test_a_port_in_use_is_one_clear_line_and_exit_1(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    _, kube_url = cluster
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        log = tmp_path / "serve.log"
        process = start_server(config_on(tmp_path, kube_url, port), log)
        code = await asyncio.to_thread(process.wait, 30)
    text = log.read_text()
    assert code == 1, text
    assert "Traceback" not in text and "responder ready" not in text and "listening" not in text, text
    [line] = text.strip().splitlines()
    assert f"127.0.0.1:{port}" in line and "already in use" in line


async def test_listening_is_logged_after_the_bind_with_endpoint_and_mode_and_shutdown_too(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    _, kube_url = cluster
    port = free_port()
    log = tmp_path / "serve.log"
    process = start_server(config_on(tmp_path, kube_url, port, dry_run=True), log)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, f"http://127.0.0.1:{port}", process, log)
        for _ in range(100):
            if "listening on" in log.read_text():
                break
            await asyncio.sleep(0.05)
        [line] = [x for x in log.read_text().splitlines() if "listening on" in x]
        assert f"http://127.0.0.1:{port}" in line and kube_url in line and "dry-run" in line, line
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
    text = log.read_text()
    assert code == 0, text
    assert "shutting down (SIGTERM)" in text and "stopped" in text
    assert "Traceback" not in text
