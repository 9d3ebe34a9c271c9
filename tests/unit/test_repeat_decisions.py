"""The core's answer to "would every alert of this body be decided DUPLICATE?" (the exact-repeat path's only
precondition, see responder/engine/repeats.py), and the shape of the receipt.repeats audit entry."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_decide import T0, alert, make_core, resolved

from responder.cli.format import format_entry
from responder.core.model import AlertEvent, Outcome
from responder.engine.repeats import MAX_ALERTS, PER_ENTRY, Known, Repeat, Repeats, _Group, _writer, repeats_entry
from responder.metrics import Metrics

WINDOW = timedelta(seconds=60)


def test_an_alert_not_seen_yet_is_no_repeat() -> None:
    core = make_core()
    assert not core.repeats([alert().identity], T0 - WINDOW)
    assert core.repeats([], T0 - WINDOW)  # no alert: nothing to decide


def test_seen_within_the_window_is_a_repeat_and_the_core_agrees() -> None:
    core = make_core()
    core.on_event(alert(), T0)
    now = T0 + WINDOW
    assert core.repeats([alert().identity], now - WINDOW)
    assert [d.outcome for d in core.on_event(alert(), now)] == [Outcome.DUPLICATE]


def test_seen_longer_ago_than_the_window_takes_the_whole_path() -> None:
    core = make_core()
    core.on_event(alert(), T0)
    later = T0 + WINDOW + timedelta(microseconds=1)
    assert not core.repeats([alert().identity], later - WINDOW)
    core.on_event(alert(), later)  # the whole path decides it DUPLICATE and refreshes it
    assert core.repeats([alert().identity], later + WINDOW - WINDOW)


def test_every_alert_of_the_body_must_be_seen() -> None:
    core = make_core()
    core.on_event(alert("fp-a"), T0)
    assert not core.repeats([alert("fp-a").identity, alert("fp-b").identity], T0)
    assert not core.repeats([resolved("fp-a").identity], T0)  # another status is another identity


def test_an_identity_dropped_by_the_size_bound_is_no_repeat() -> None:
    core = make_core(dedupe_max=2)
    for fp in ("fp-a", "fp-b", "fp-c"):
        core.on_event(alert(fp, action="notify"), T0)
    assert not core.repeats([alert("fp-a").identity], T0)
    assert core.repeats([alert("fp-b").identity, alert("fp-c").identity], T0)


events = st.builds(
    lambda fp, firing, minutes, action: (
        alert(f"fp-{fp}", start=T0 + timedelta(minutes=minutes), action=action)
        if firing
        else resolved(f"fp-{fp}", start=T0 + timedelta(minutes=minutes))
    ),
    st.integers(0, 3),
    st.booleans(),
    st.integers(0, 2),
    st.sampled_from(["rollback", "notify", "rollback-if-persists", None]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(events, st.integers(0, 400)), max_size=25),
    st.lists(events, min_size=1, max_size=4),
    st.integers(0, 400),
)
def test_whenever_the_core_says_repeat_every_alert_is_decided_duplicate(
    history: list[tuple[AlertEvent, int]], body: list[AlertEvent], quiet: int
) -> None:
    core = make_core(dedupe_ttl=timedelta(minutes=5), dedupe_max=1_000)
    now = T0
    for event, seconds in history:
        now += timedelta(seconds=seconds)
        core.on_tick(now)
        core.on_event(event, now)
    now += timedelta(seconds=quiet)  # the repeat comes some time after the core last decided anything
    if core.repeats([e.identity for e in body], now - WINDOW):
        for event in body:
            assert [d.outcome for d in core.on_event(event, now)] == [Outcome.DUPLICATE]


class RecordingTx:
    """Only what the repeats' write calls: the audit entries it appends."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any], str]] = []

    def append_audit(self, kind: str, data: dict[str, Any], *, target: str | None = None, actor: str = "") -> None:
        assert target is None
        self.entries.append((kind, data, actor))


def repeat(nid: int, at: float) -> Repeat:
    known = Known(nid, f"{nid:064x}", (("fp", "firing", T0),) * 3, 0)
    return Repeat(known, at, "10.0.0.7", "Alertmanager/0.27.0")


def test_one_entry_per_hundred_repeats_grouped_by_notification_and_the_same_on_a_second_run() -> None:
    group = _Group()
    for i in range(2 * PER_ENTRY + 50):
        assert group.add(repeat(1 + i % 2, 1000.0 + i))
    write = _writer(group)
    first, again = RecordingTx(), RecordingTx()
    write(first)  # type: ignore[arg-type]
    assert not group.add(repeat(1, 0.0))  # closed: a later repeat starts the next group
    write(again)  # type: ignore[arg-type]  # the writer may run a batch again (a write refused in it)
    assert first.entries == again.entries
    assert [e[0] for e in first.entries] == ["receipt.repeats"] * 3
    assert [e[1]["repeats"] for e in first.entries] == [100, 100, 50]
    data = first.entries[0][1]
    assert data["decision"] == "duplicate" and first.entries[0][2] == "alertmanager"
    assert [(n["notification_id"], n["sha256"], n["alerts"], len(n["received"])) for n in data["notifications"]] == [
        (1, f"{1:064x}", 3, 50),
        (2, f"{2:064x}", 3, 50),
    ]
    assert data["notifications"][0]["received"][0] == {
        "at": 1000.0,
        "remote": "10.0.0.7",
        "user_agent": "Alertmanager/0.27.0",
    }
    listed = [r["at"] for _, d, _ in first.entries for n in d["notifications"] for r in n["received"]]
    assert sorted(listed) == [1000.0 + i for i in range(2 * PER_ENTRY + 50)]  # every repeat, once


def test_an_entry_reads_in_words() -> None:
    data = repeats_entry([repeat(4, 1.0), repeat(9, 2.0), repeat(4, 3.0)])
    line = format_entry({"seq": 12, "ts": "2026-11-30T05:00:00Z", "kind": "receipt.repeats", "data": data})
    assert line.endswith("3 byte-for-byte repeats of notification 4, 9: every alert DUPLICATE")


def stored(nid: int, alerts: int) -> list[AlertEvent]:
    return [alert(f"fp-{nid}-{i}").with_ids(event_id=nid * 1000 + i, notification_id=nid) for i in range(alerts)]


def test_the_bodies_remembered_are_bounded_by_their_alerts_oldest_first() -> None:
    repeats = Repeats(SimpleNamespace(core=make_core(), metrics=Metrics()), WINDOW)  # type: ignore[arg-type]
    per_body = 1000
    bodies = MAX_ALERTS // per_body + 2
    for nid in range(1, bodies + 1):
        repeats.remember(nid.to_bytes(32, "big"), stored(nid, per_body), 0)
    kept = [int.from_bytes(digest, "big") for digest in repeats._known]
    assert kept == list(range(bodies - MAX_ALERTS // per_body + 1, bodies + 1))  # the newest that fit
    assert repeats._alerts == sum(len(k.identities) for k in repeats._known.values()) <= MAX_ALERTS
    repeats.remember(kept[0].to_bytes(32, "big"), stored(99, 3), 5)  # stored again: the newest copy is cited
    assert repeats._known[kept[0].to_bytes(32, "big")].notification_id == 99
    assert repeats._alerts == sum(len(k.identities) for k in repeats._known.values())
    repeats.remember(b"x" * 32, [], 0)  # no alerts: nothing to remember
    repeats.remember(b"y" * 32, stored(7, MAX_ALERTS + 1), 0)  # too many to hold
    assert b"x" * 32 not in repeats._known and b"y" * 32 not in repeats._known


def test_a_window_of_zero_remembers_nothing() -> None:
    repeats = Repeats(SimpleNamespace(core=make_core(), metrics=Metrics()), timedelta(0))  # type: ignore[arg-type]
    repeats.remember(b"z" * 32, stored(1, 1), 0)
    assert not repeats._known
