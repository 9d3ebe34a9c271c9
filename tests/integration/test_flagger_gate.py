"""Flagger's rollback gate (issue 15): for a ``delegate: flagger`` target the responder decides as for any canary
but changes nothing itself; Flagger's ``type: rollback`` webhook asks ``POST /api/v1/gates/flagger/rollback`` at each
analysis interval and rolls the canary back when the answer is 2xx. The gate says yes exactly while a rollback of
that canary is decided, not restored, not paused, and for the revision the decision was about."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import (
    ADMIN_TOKEN,
    GATE_TOKEN,
    READ_TOKEN,
    WEBHOOK_TOKEN,
    Running,
    alert,
    notification,
    read_only,
    running_responder,
    write_config,
)

from responder.testing.emulator import Emulator

GATE = "/api/v1/gates/flagger/rollback"
FLAGGER_TARGET = {"name": "flagger", "namespace": "{namespace}", "deployment": "{app}", "delegate": "flagger"}


def flagger_call(name: str = "checkout", *, checksum: str = "7f9c6b", token: str | None = GATE_TOKEN) -> Any:
    """The payload Flagger posts to a rollback webhook: the Canary's name, namespace, phase and checksum, and the
    webhook's metadata (where a Canary can carry the gate token)."""
    metadata = {"token": token} if token is not None else {}
    return {"name": name, "namespace": "shop", "phase": "Progressing", "checksum": checksum, "metadata": metadata}


async def ask(running: Running, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with running.session.post(f"{running.url}{GATE}", json=payload, headers=headers or {}) as answer:
        return answer.status, await answer.json()


async def admin(running: Running, path: str, body: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with running.session.post(f"{running.url}{path}", json=body, headers=headers) as answer:
        return answer.status, await answer.json()


@pytest.fixture
async def running(tmp_path: Path, cluster: tuple[Emulator, str]) -> Any:
    async with running_responder(write_config(tmp_path, kube_url=cluster[1], targets=[FLAGGER_TARGET])) as running:
        yield running


async def test_the_gate_says_roll_back_once_decided_and_the_responder_changes_nothing_itself(
    running: Running, cluster: tuple[Emulator, str]
) -> None:
    assert await ask(running, flagger_call()) == (
        409,
        {"rollback": False, "reason": "no rollback of shop/checkout decided (or restored since)"},
    )
    sent = time.monotonic()
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()
    status, body = await ask(running, flagger_call())
    print(f"webhook -> gate says roll back: {1000 * (time.monotonic() - sent):.1f} ms")
    [record] = await running.services.store.rollbacks()
    assert record.status == "delegated"
    assert (status, body["rollback"], body["incident"]) == (200, True, record.incident)
    assert cluster[0].mutations == []  # Flagger rolls back; the responder touched nothing
    assert (await ask(running, flagger_call()))[0] == 200  # asked again at the next interval: still yes
    assert (await ask(running, flagger_call("payments")))[0] == 409  # another canary: no
    [record] = await running.services.store.rollbacks()
    asked = record.steps["flagger"]
    assert (asked["answers"], asked["checksum"], asked["phase"]) == (2, "7f9c6b", "Progressing")
    entries = await running.services.store.audit_entries(kind="flagger.gate")
    assert [(e.target, e.actor, e.data["answer"]) for e in entries] == [("shop/checkout", "flagger", "roll back")] * 2
    assert GATE_TOKEN not in str([e.data for e in await running.services.store.audit_entries()])


async def test_a_new_revision_pause_and_restore_each_turn_the_answer_to_no(running: Running) -> None:
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()
    assert (await ask(running, flagger_call(checksum="rev-1")))[0] == 200
    status, body = await ask(running, flagger_call(checksum="rev-2"))  # the Canary was redeployed since
    assert status == 409 and "new revision" in body["reason"]
    assert (await admin(running, "/api/v1/pause", {"reason": "investigating"}))[0] == 200
    status, body = await ask(running, flagger_call(checksum="rev-1"))
    assert status == 409 and body["reason"].startswith("paused")
    assert (await admin(running, "/api/v1/resume", {}))[0] == 200
    assert (await ask(running, flagger_call(checksum="rev-1")))[0] == 200
    status, body = await admin(running, "/api/v1/targets/shop/checkout/restore", {"dry_run": True})
    assert (status, body["status"]) == (200, "dry_run") and "withdraw" in body["message"], body
    assert (await ask(running, flagger_call(checksum="rev-1")))[0] == 200  # a dry run changes nothing
    status, body = await admin(running, "/api/v1/targets/shop/checkout/restore", {"dry_run": False})
    assert (status, body["status"]) == (200, "restored"), body
    assert (await ask(running, flagger_call(checksum="rev-1")))[0] == 409  # restored: Flagger may go on
    [record] = await running.services.store.rollbacks()
    assert record.status == "restored"


async def test_only_the_gate_token_opens_the_gate(running: Running) -> None:
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()
    assert (await ask(running, flagger_call(token=None)))[0] == 401
    assert (await ask(running, flagger_call(token="not-the-gate-token")))[0] == 401
    assert (await ask(running, flagger_call(token=""), {"Authorization": f"Bearer {GATE_TOKEN}"}))[0] == 200
    for other in (ADMIN_TOKEN, READ_TOKEN, WEBHOOK_TOKEN):  # known tokens of other roles: 403, not a way in
        status, body = await ask(running, flagger_call(token=None), {"Authorization": f"Bearer {other}"})
        assert (status, body["error"]) == (403, "forbidden")
    status, body = await ask(running, flagger_call(token=None), {"Authorization": f"Bearer {GATE_TOKEN}x"})
    assert status == 401 and "www-authenticate" not in body
    # the token is checked before the payload: a caller without it learns nothing about what the gate accepts
    async with running.session.post(f"{running.url}{GATE}", data=b"{not json") as answer:
        assert answer.status == 401
    status, body = await ask(running, {"namespace": "shop", "metadata": {"token": GATE_TOKEN}})
    assert (status, body["error"]) == (422, "schema")
    for forbidden in (GATE_TOKEN, ADMIN_TOKEN):
        rejections = await running.services.store.audit_entries(kind="rejected")
        assert forbidden not in str([e.data for e in rejections])


async def test_with_no_gate_token_configured_the_gate_is_off(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    config = write_config(tmp_path, kube_url=cluster[1], targets=[FLAGGER_TARGET])
    document = yaml.safe_load(config.read_text())
    del document["auth"]["gate_token"]
    config.write_text(yaml.safe_dump(document))
    async with running_responder(config) as running:
        status, body = await ask(running, flagger_call())
        assert (status, body["error"]) == (404, "gate_off")
        assert (await ask(running, flagger_call(token=None)))[0] == 401


async def test_a_database_that_cannot_record_the_answer_gives_503_and_flagger_asks_again(running: Running) -> None:
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()
    async with (
        read_only(running.services.store),
        running.session.post(f"{running.url}{GATE}", json=flagger_call()) as answer,
    ):
        status, body, retry = answer.status, await answer.json(), answer.headers.get("Retry-After")
    # Not "roll back" (the answer could not be recorded) and not a 500: try again, as Flagger does next interval.
    assert (status, body["error"], retry) == (503, "store_unavailable", "5")
    assert (await ask(running, flagger_call()))[0] == 200
