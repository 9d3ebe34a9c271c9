"""Issue 14: the operator CLI never misleads. Each test runs ``canary-responder`` as a separate process against the
real responder (on loopback, with the Kubernetes API emulator) and checks what on-call reads and the exit code."""

from __future__ import annotations

import os
import pwd
import re
from pathlib import Path

import pytest
from support import (
    ADMIN_TOKEN,
    READ_TOKEN,
    Running,
    alert,
    notification,
    responder_command,
    running_responder,
    write_config,
)

from responder.testing.emulator import Emulator

pytestmark = pytest.mark.slow


async def run_cli(*args: str, env: dict[str, str] | None = None, token: str | None = None) -> tuple[int, str, str]:
    environ = {**os.environ, **(env or {})}
    environ.pop("CANARY_RESPONDER_TOKEN", None)
    if token is not None:
        environ["CANARY_RESPONDER_TOKEN"] = token
    for name, value in (env or {}).items():
        if value == "":
            environ.pop(name, None)
    return await responder_command(*args, env=environ)


async def with_rollback(running: Running) -> None:
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()


@pytest.fixture
async def running(tmp_path: Path, cluster: tuple[Emulator, str]) -> Running:
    _, kube_url = cluster
    async with running_responder(write_config(tmp_path, kube_url=kube_url)) as found:
        yield found  # type: ignore[misc]


def admin(running: Running) -> dict[str, str]:
    return {"CANARY_RESPONDER_URL": running.url}


async def test_replay_execute_says_when_nothing_happened(running: Running) -> None:
    await with_rollback(running)
    code, out, err = await run_cli(
        "replay", "--notification-id", "1", "--execute", env=admin(running), token=ADMIN_TOKEN
    )
    assert code == 1, (out, err)
    assert "NOTHING EXECUTED" in out and "DUPLICATE" in out
    assert "--force" in out  # says what would act
    assert not out.startswith("executed")


async def test_audit_verify_honours_the_server_url_from_the_environment(running: Running) -> None:
    await with_rollback(running)
    code, out, err = await run_cli("audit", "verify", env=admin(running), token=READ_TOKEN)
    assert code == 0 and "audit chain OK" in out, (out, err)


async def test_audit_list_n_gives_the_newest_entries_like_tail(running: Running) -> None:
    await with_rollback(running)
    length = (await running.services.store.verify()).length
    code, out, err = await run_cli("audit", "list", "-n", "3", env=admin(running), token=READ_TOKEN)
    assert code == 0, err
    seqs = [int(m) for m in re.findall(r"^#(\d+)", out, flags=re.M)]
    assert seqs == [length - 2, length - 1, length], out


async def test_usage_errors_exit_2_and_name_the_accepted_formats(running: Running) -> None:
    code, out, err = await run_cli("audit", "list", "--since", "yesterday", env=admin(running), token=READ_TOKEN)
    assert code == 2, (out, err)
    assert "RFC 3339" in err and "2h" in err
    code, _, err = await run_cli("audit", "list", "--since", "2h", env=admin(running), token=READ_TOKEN)
    assert code == 0, err
    code, _, err = await run_cli("audit", "list", "--kind", "nonsense", env=admin(running), token=READ_TOKEN)
    assert code == 2 and "restore.intent" in err  # the kinds are listed


async def test_a_kind_prefix_finds_every_kind_under_it(running: Running) -> None:
    await with_rollback(running)
    code, out, err = await run_cli("restore", "shop", "checkout-canary", env=admin(running), token=ADMIN_TOKEN)
    assert code == 0, (out, err)
    code, out, err = await run_cli("audit", "list", "--kind", "restore", env=admin(running), token=READ_TOKEN)
    assert code == 0, err
    kinds = set(re.findall(r"^#\d+\s+\S+\s+(\S+)", out, flags=re.M))
    assert {"restore.intent", "restore.action", "restore.result"} <= kinds, out


async def test_a_server_without_scheme_is_taken_as_http(running: Running) -> None:
    bare = running.url.removeprefix("http://")
    code, out, err = await run_cli("status", "--server", bare, token=READ_TOKEN)
    assert code == 0 and "paused: no" in out, (out, err)


async def test_entries_read_for_people_and_json_for_machines(running: Running) -> None:
    await with_rollback(running)
    code, out, err = await run_cli("restore", "shop", "checkout-canary", env=admin(running), token=ADMIN_TOKEN)
    assert code == 0, (out, err)
    code, out, err = await run_cli("audit", "list", "-n", "200", env=admin(running), token=READ_TOKEN)
    assert code == 0, err
    assert "None" not in out and " 1 attempts" not in out and "{'" not in out and '{"' not in out, out
    code, out, _ = await run_cli("audit", "list", "-n", "2", "--json", env=admin(running), token=READ_TOKEN)
    assert out.lstrip().startswith("{") and '"entries"' in out


async def test_the_actor_falls_back_to_the_account_when_user_is_unset(running: Running) -> None:
    env = {**admin(running), "USER": "", "LOGNAME": ""}
    code, out, err = await run_cli("pause", "--reason", "freeze", env=env, token=ADMIN_TOKEN)
    assert code == 0, (out, err)
    account = pwd.getpwuid(os.getuid()).pw_name
    assert f"by {account}" in out and "admin:admin" not in out


async def test_incident_list_and_show(running: Running) -> None:
    await with_rollback(running)
    [record] = await running.services.store.rollbacks()
    code, out, err = await run_cli("incident", "list", env=admin(running), token=READ_TOKEN)
    assert code == 0 and record.incident in out and "shop/checkout-canary" in out, (out, err)
    code, out, err = await run_cli("incident", "show", record.incident, env=admin(running), token=READ_TOKEN)
    assert code == 0 and "Canary rolled back: shop/checkout-canary" in out, (out, err)
    code, out, _ = await run_cli("incident", "show", record.incident, "--md", env=admin(running), token=READ_TOKEN)
    assert code == 0 and out.startswith("#")
    code, _, err = await run_cli("incident", "show", "no-such", env=admin(running), token=READ_TOKEN)
    assert code == 1 and "no-such" in err


async def test_audit_alone_prints_the_audit_help() -> None:
    code, out, err = await run_cli("audit")
    assert code == 2
    assert "usage: canary-responder audit" in out + err and "verify" in out + err
    assert "check-config" not in out + err  # not the top-level help


async def test_check_config_and_serve_take_the_config_the_same_way(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for args in (("check-config", str(config)), ("check-config", "--config", str(config))):
        code, out, err = await run_cli(*args)
        assert code == 0, (args, out, err)


async def test_restore_shows_its_progress_and_says_who_acted(running: Running) -> None:
    await with_rollback(running)
    code, out, err = await run_cli(
        "restore", "shop", "checkout-canary", "--actor", "carol", env=admin(running), token=ADMIN_TOKEN
    )
    assert code == 0 and "RESTORED" in out and "by carol" in out, (out, err)
    assert "restore of" in err and "scaling back to" in err and "pods ready" in err, err
    assert err.index("scaling back to") < err.index("pods ready")
    code, out, err = await run_cli("restore", "shop", "checkout-canary", env=admin(running), token=ADMIN_TOKEN)
    assert code == 1 and "REFUSED" in out


async def test_incident_link_prints_the_signed_page_link_or_says_pages_are_off(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    _, kube_url = cluster
    key = tmp_path / "page-key"
    key.write_text("k" * 48)
    pages = {"signing_key": {"file": str(key)}, "link_ttl": "1d"}
    notifications = {"public_url": "https://responder.example.com"}
    config = write_config(tmp_path, kube_url=kube_url, incident_pages=pages, notifications=notifications)
    async with running_responder(config) as with_pages:
        await with_rollback(with_pages)
        [record] = await with_pages.services.store.rollbacks()
        code, out, err = await run_cli("incident", "link", record.incident, env=admin(with_pages), token=READ_TOKEN)
        assert code == 0, (out, err)
        assert out.strip().startswith(f"https://responder.example.com/incidents/{record.incident}?")
        assert "sig=" in out and "expires=" in out


async def test_incident_link_without_pages_says_so(running: Running) -> None:
    await with_rollback(running)
    [record] = await running.services.store.rollbacks()
    code, _, err = await run_cli("incident", "link", record.incident, env=admin(running), token=READ_TOKEN)
    assert code == 1 and "incident_pages" in err
