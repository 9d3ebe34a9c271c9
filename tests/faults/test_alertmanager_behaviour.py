"""What Alertmanager really does, against the real responder: HA peers, out-of-order delivery, truncation and
repeat notifications (README "Design": identity is (fingerprint, status, startsAt); externalURL and receiver
never take part; resolved never acts; a firing event not newer than a seen resolution is STALE)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support import Running, alert, notification, running_responder, write_config

from faults.helpers import audit_kinds, ok_mutations, query, settle
from responder.testing.emulator import Emulator

PEERS = ("http://alertmanager-0:9093", "http://alertmanager-1:9093", "http://alertmanager-2:9093")


async def outcomes(running: Running) -> list[tuple[str, str]]:
    return [(d["alertname"], d["outcome"]) for d in await audit_kinds(running, "decision")]


async def test_the_same_group_from_three_peers_gives_one_rollback(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    group = [alert(app="checkout"), alert("CanaryHighLatency", app="checkout")]
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        answers = await asyncio.gather(
            *(
                running.post_alerts(notification(*group, external_url=peer, receiver=f"r{i}"))
                for i, peer in enumerate(PEERS)
            )
        )
        assert [a.status for a in answers] == [200, 200, 200]
        await settle(running)
        decided = await outcomes(running)
        receipts = await audit_kinds(running, "receipt")
        [record] = await running.services.store.rollbacks()
    assert sorted(o for _, o in decided) == ["coalesced"] + ["duplicate"] * 4 + ["rollback"]
    assert sorted(r["external_url"] for r in receipts) == sorted(PEERS)  # each delivery recorded as received
    assert len(record.cites) == 2  # the one rollback cites both alerts of the group
    assert ok_mutations(emulator, kind="Deployment", subresource="scale") == ["checkout-canary"]
    assert ok_mutations(emulator, kind="Ingress") == ["checkout-canary"]


async def test_firing_after_resolved_out_of_order_is_stale_and_never_acts(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        # Peer 1 delivers the resolution before peer 0's delayed firing notification of the same alert.
        resolved = notification(alert(status="resolved", starts_at=start), external_url=PEERS[1])
        late_firing = notification(alert(starts_at=start), external_url=PEERS[0])
        assert (await running.post_alerts(resolved)).status == 200
        await settle(running)
        assert (await running.post_alerts(late_firing)).status == 200
        await settle(running)
        assert await outcomes(running) == [("CanaryHighErrorRate", "resolved"), ("CanaryHighErrorRate", "stale")]
        assert await running.services.store.rollbacks() == []
        assert emulator.mutations == []
        # The alert fires again later (a newer startsAt): that one is acted on.
        again = notification(alert(starts_at=start + timedelta(minutes=20)))
        assert (await running.post_alerts(again)).status == 200
        await settle(running)
        assert (await outcomes(running))[-1] == ("CanaryHighErrorRate", "rollback")
    assert ok_mutations(emulator, kind="Deployment", subresource="scale") == ["checkout-canary"]


async def test_truncated_alerts_are_recorded_and_counted(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        payload = notification(alert(app="checkout"), alert(app="payments"), truncatedAlerts=7)
        response = await running.post_alerts(payload)
        assert response.status == 200 and (await response.json())["events"] == 2
        second = notification(alert(app="search"), truncatedAlerts=5, external_url=PEERS[1])
        assert (await running.post_alerts(second)).status == 200
        await settle(running)
        stored = await query(running, "SELECT truncated FROM notifications ORDER BY id")
        receipts = await audit_kinds(running, "receipt")
        counted = running.services.metrics.registry.get_sample_value("canary_responder_truncated_alerts_total")
        rollbacks = await running.services.store.rollbacks()
    assert stored == [(7,), (5,)]
    assert [r["truncated_alerts"] for r in receipts] == [7, 5]
    assert counted == 12
    # The alerts the notifications did carry are processed as usual.
    assert sorted(r.key for r in rollbacks) == [f"shop/{a}-canary" for a in ("checkout", "payments", "search")]


async def test_repeat_notifications_are_duplicates_and_never_roll_back_again(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    config = write_config(tmp_path, kube_url=url)
    group = notification(alert(app="checkout"), alert("CanaryLowTraffic", app="checkout", action="notify"))
    async with running_responder(config) as running:
        for _ in range(4):  # the first notification, then three repeat_interval re-sends of the same group
            assert (await running.post_alerts(group)).status == 200
            await settle(running)
    async with running_responder(config) as running:  # repeats keep coming after a restart, too
        for peer in PEERS:
            assert (await running.post_alerts({**group, "externalURL": peer})).status == 200
        await settle(running)
        decided = await outcomes(running)
        repeats = await audit_kinds(running, "receipt.repeats")
        [record] = await running.services.store.rollbacks()
        outbox = await query(running, "SELECT kind FROM outbox ORDER BY id")
    assert decided[:2] == [("CanaryHighErrorRate", "rollback"), ("CanaryLowTraffic", "notify")]
    # The three re-sends are byte-for-byte repeats: audited as such, every alert DUPLICATE, not decided again.
    assert [(r["repeats"], r["decision"], [n["alerts"] for n in r["notifications"]]) for r in repeats] == [
        (1, "duplicate", [2])
    ] * 3
    assert [o for _, o in decided[2:]] == ["duplicate"] * 6  # the peers' copies differ in externalURL: decided
    assert record.status == "done"
    assert ok_mutations(emulator, kind="Deployment", subresource="scale") == ["checkout-canary"]
    assert sorted(outbox) == [("notify",), ("rollback",)]  # one notification each, not one per repeat
