"""Issue 14: ``check-config`` finds what would stop ``serve`` (a kubeconfig that is missing or does not parse),
prints the Kubernetes endpoint and the notification settings with every secret redacted, and ``--probe`` connects
read-only to each configured service and reports it. The real command as a process; the Kubernetes API emulator
and the Slack-like receiver (with its Prometheus stand-in) on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_fake import BOT_TOKEN, FakeSlack, fake_slack
from support import ALL_SECRETS, responder_command, write_config
from test_slack_outbox import slack_config

from responder.testing.emulator import Emulator

pytestmark = pytest.mark.slow


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as fake:
        yield fake


async def check_config(*args: str) -> tuple[int, str, str]:
    return await responder_command("check-config", *args)


async def test_a_missing_kubeconfig_is_found_before_serve(tmp_path: Path) -> None:
    config = write_config(tmp_path, kubernetes={"mode": "kubeconfig", "kubeconfig": str(tmp_path / "nope.yaml")})
    code, _, err = await check_config(str(config))
    assert code == 2, err
    assert "nope.yaml" in err and "no such file" in err and "Traceback" not in err
    # --skip-secrets checks a configuration away from where it serves (CI, a rendered chart): the kubeconfig is a
    # mounted Secret there, so it is named as a warning, not an error
    code, _, err = await check_config("--skip-secrets", str(config))
    assert code == 0 and "warning: kubernetes.kubeconfig: no such file" in err, err


async def test_a_kubeconfig_that_does_not_parse_is_found_before_serve(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig.yaml"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")  # no current-context
    config = write_config(tmp_path, kubernetes={"mode": "kubeconfig", "kubeconfig": str(broken)})
    code, _, err = await check_config(str(config))
    assert code == 2 and "kubernetes:" in err and "Traceback" not in err, err


async def test_it_prints_the_endpoint_and_notifications_with_secrets_redacted(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    _, kube_url = cluster
    code, out, err = await check_config(str(slack_config(tmp_path, kube_url, slack)))
    assert code == 0, err
    assert f"kubernetes: {kube_url} (url)" in out
    assert "slack: bot token from file" in out and "(redacted)" in out and "#canaries" in out
    assert f"prometheus_url: {slack.url}" in out
    for secret in (*ALL_SECRETS, BOT_TOKEN):
        assert secret not in out + err


async def test_probe_reports_each_service(tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack) -> None:
    _, kube_url = cluster
    code, out, err = await check_config(str(slack_config(tmp_path, kube_url, slack)), "--probe")
    assert code == 0, (out, err)
    assert "probe kubernetes: OK" in out and "probe slack: OK" in out and "probe prometheus: OK" in out
    assert not slack.requests  # read-only: nothing was posted


async def test_probe_fails_with_exit_1_when_kubernetes_does_not_answer(tmp_path: Path) -> None:
    code, out, err = await check_config(str(write_config(tmp_path, kube_url="http://127.0.0.1:9")), "--probe")
    assert code == 1, (out, err)
    assert "probe kubernetes: FAILED" in out and "Traceback" not in err
