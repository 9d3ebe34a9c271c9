"""Properties of the decision core under arbitrary interleavings of alert events and timer ticks (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from responder.core.decide import CoreSettings, Decision, DecisionCore
from responder.core.model import AlertEvent, AlertStatus, Outcome, PolicyMode, iso, parse_iso
from responder.core.rules import PolicyRule, TargetRule, TrafficTemplate
from responder.core.webhook import WebhookNotification, to_event

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
COOLDOWN = timedelta(seconds=300)

CORE_SETTINGS = CoreSettings(
    targets=(
        TargetRule(
            name="shop",
            match={"team": "shop"},
            namespace="{namespace}",
            deployment="{app}-canary",
            traffic=(TrafficTemplate("nginx", "{app}-canary"),),
        ),
    ),
    policies=(
        PolicyRule(name="rollback", match={"action": "rollback"}, mode=PolicyMode.IMMEDIATE),
        PolicyRule(
            name="rollback-if-persists",
            match={"action": "rollback-if-persists"},
            mode=PolicyMode.PERSIST,
            persist_for=timedelta(seconds=120),
        ),
        PolicyRule(name="notify", match={"action": "notify"}, mode=PolicyMode.NOTIFY),
    ),
    allowed_namespaces=frozenset({"shop"}),
    coalesce_window=timedelta(seconds=30),
    cooldown=COOLDOWN,
    cap_max=2,
    cap_window=timedelta(seconds=600),
    dedupe_ttl=timedelta(seconds=900),
    dedupe_max=8,
)


def _labels(action: str | None, app: str, *, team: str = "shop", namespace: str = "shop") -> dict[str, str]:
    labels = {"alertname": f"Canary-{action}-{app}", "team": team, "namespace": namespace, "app": app}
    if action is not None:
        labels["action"] = action
    return labels


# A fingerprint is a hash of the labels, so each fingerprint in the pool has fixed labels.
FINGERPRINTS: dict[str, dict[str, str]] = {
    "f0": _labels("rollback", "a"),
    "f1": _labels("rollback", "a") | {"alertname": "CanaryLatency"},
    "f2": _labels("rollback-if-persists", "a"),
    "f3": _labels("rollback-if-persists", "b"),
    "f4": _labels("rollback", "b"),
    "f5": _labels("notify", "a"),
    "f6": _labels("rollback", "a", team="unknown"),  # no target rule
    "f7": _labels("rollback", "a", namespace="kube-system"),  # namespace not allowed
    "f8": _labels(None, "c"),  # no policy: default notify
    "f9": _labels("rollback", "c"),
    "f10": _labels("rollback-if-persists", "c"),
}
STARTS = [T0 + timedelta(seconds=s) for s in (-120, 0, 45, 90, 200, 700)]
STEPS_SECONDS = [0, 0, 0, 1, 1, 5, 10, 29, 30, 31, 59, 60, 61, 120, 299, 300, 301, 600, 901]


@dataclass(frozen=True)
class Ev:
    fingerprint: str
    status: AlertStatus
    start: datetime
    external_url: str = ""
    receiver: str = "responder"


@dataclass(frozen=True)
class Tick:
    pass


Step = tuple[timedelta, Ev | Tick]  # advance the clock, then deliver


def event_of(ev: Ev) -> AlertEvent:
    return AlertEvent(
        fingerprint=ev.fingerprint,
        status=ev.status,
        starts_at=ev.start,
        ends_at=None,
        labels=dict(FINGERPRINTS[ev.fingerprint]),
    )


def event_via_webhook(ev: Ev) -> AlertEvent:
    payload = {
        "version": "4",
        "groupKey": '{}:{alertname="x"}',
        "status": ev.status.value,
        "receiver": ev.receiver,
        "externalURL": ev.external_url,
        "alerts": [
            {
                "status": ev.status.value,
                "labels": FINGERPRINTS[ev.fingerprint],
                "startsAt": ev.start.isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": ev.fingerprint,
            }
        ],
    }
    return to_event(WebhookNotification.model_validate(payload).alerts[0])


statuses = st.sampled_from([AlertStatus.FIRING, AlertStatus.RESOLVED])
evs = st.builds(
    Ev,
    fingerprint=st.sampled_from(sorted(FINGERPRINTS)),
    status=statuses,
    start=st.sampled_from(STARTS),
    external_url=st.sampled_from(["", "http://am-0:9093", "http://am-1.monitoring:9093/"]),
    receiver=st.sampled_from(["responder", "web\\.hook", "canary\\-responder"]),
)
advance = st.sampled_from(STEPS_SECONDS).map(lambda s: timedelta(seconds=s))


def steps_with(
    events: st.SearchStrategy[Ev], statuses_allowed: frozenset[AlertStatus] = frozenset(AlertStatus)
) -> st.SearchStrategy[list[Step]]:
    """Steps over a small pool of events, so that repeats (HA peers, retries) and same-target alerts are common."""

    @st.composite
    def build(draw: st.DrawFn) -> list[Step]:
        pool = draw(st.lists(events, min_size=1, max_size=6))
        # the same alerts with the other status: an alert's firing and resolution (or a late firing) often meet
        flipped = draw(st.lists(st.sampled_from(pool), max_size=3))
        pool += [replace(ev, status=next(s for s in AlertStatus if s is not ev.status)) for ev in flipped]
        pool = [ev for ev in pool if ev.status in statuses_allowed] or pool[:1]
        item = st.one_of(st.sampled_from(pool), st.sampled_from(pool), events, st.just(Tick()))
        return draw(st.lists(st.tuples(advance, item), max_size=40))

    return build()


steps = steps_with(evs)
resolved_steps = steps_with(
    st.builds(
        Ev,
        fingerprint=st.sampled_from(sorted(FINGERPRINTS)),
        status=st.just(AlertStatus.RESOLVED),
        start=st.sampled_from(STARTS),
    ),
    frozenset({AlertStatus.RESOLVED}),
)


Trace = list[tuple[datetime, list[Decision]]]


def run(sequence: list[Step], *, convert: Callable[[Ev], AlertEvent] = event_of) -> Trace:
    """Feed the steps into a fresh core; one entry (time, decisions) per step."""
    core = DecisionCore(CORE_SETTINGS)
    now = T0
    trace: Trace = []
    for delta, item in sequence:
        now += delta
        decisions = core.on_tick(now) if isinstance(item, Tick) else core.on_event(convert(item), now)
        trace.append((now, decisions))
    return trace


def all_decisions(trace: Trace) -> list[tuple[datetime, Decision]]:
    return [(now, d) for now, decisions in trace for d in decisions]


PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(resolved_steps)
def test_resolved_only_input_never_acts(sequence: list[Step]) -> None:
    for _, decision in all_decisions(run(sequence)):
        assert decision.outcome in {Outcome.RESOLVED, Outcome.DUPLICATE}, decision
        assert not decision.acts


@PROPERTY
@given(steps)
def test_at_most_one_rollback_per_target_per_cooldown(sequence: list[Step]) -> None:
    rollbacks: dict[str, list[datetime]] = defaultdict(list)
    for now, decision in all_decisions(run(sequence)):
        if decision.outcome is Outcome.ROLLBACK:
            assert decision.target is not None
            rollbacks[decision.target.key].append(now)
    for times in rollbacks.values():
        for earlier, later in zip(times, times[1:], strict=False):
            assert later - earlier >= COOLDOWN, times


@PROPERTY
@given(steps)
def test_only_firing_events_with_an_acting_policy_and_a_target_roll_back(sequence: list[Step]) -> None:
    for _, decision in all_decisions(run(sequence)):
        if decision.outcome in {Outcome.ROLLBACK, Outcome.COALESCED, Outcome.PENDING, Outcome.CANCELLED}:
            assert decision.event.status is AlertStatus.FIRING
            assert decision.policy in {"rollback", "rollback-if-persists"}
            assert decision.target is not None
        if decision.event.status is AlertStatus.RESOLVED:
            assert decision.outcome in {Outcome.RESOLVED, Outcome.DUPLICATE}
        if decision.outcome in {Outcome.ROLLBACK, Outcome.COALESCED, Outcome.SUPPRESSED}:
            assert decision.incident is not None


@PROPERTY
@given(steps, st.data())
def test_delivering_an_event_twice_only_adds_a_duplicate(sequence: list[Step], data: st.DataObject) -> None:
    event_positions = [i for i, (_, item) in enumerate(sequence) if isinstance(item, Ev)]
    if not event_positions:
        return
    i = data.draw(st.sampled_from(event_positions), label="index")
    doubled = [*sequence[: i + 1], (timedelta(0), sequence[i][1]), *sequence[i + 1 :]]

    original = run(sequence)
    with_copy = run(doubled)

    copy_now, copy_decisions = with_copy[i + 1]
    assert [d.outcome for d in copy_decisions] == [Outcome.DUPLICATE]
    assert copy_decisions[0].event == event_of(sequence[i][1])  # type: ignore[arg-type]
    assert copy_now == with_copy[i][0]
    assert with_copy[: i + 1] + with_copy[i + 2 :] == original


@PROPERTY
@given(steps, st.randoms(use_true_random=False))
def test_decisions_do_not_depend_on_external_url_or_receiver(sequence: list[Step], rnd: Random) -> None:
    def reshuffled(step: Step) -> Step:
        delta, item = step
        if isinstance(item, Tick):
            return step
        other = Ev(
            item.fingerprint,
            item.status,
            item.start,
            external_url=rnd.choice(["http://am-2:9093", "https://alerts.example.com", ""]),
            receiver=rnd.choice(["other", "web\\.hook", "team\\-a\\.canary"]),
        )
        return delta, other

    first = run(sequence, convert=event_via_webhook)
    second = run([reshuffled(s) for s in sequence], convert=event_via_webhook)
    assert first == second
    # and the webhook path agrees with events built directly
    assert first == run(sequence)


@PROPERTY
@given(steps)
def test_replaying_into_a_fresh_core_is_deterministic(sequence: list[Step]) -> None:
    def replay() -> tuple[Trace, dict[str, int], datetime | None]:
        core = DecisionCore(CORE_SETTINGS)
        now = T0
        trace: Trace = []
        for delta, item in sequence:
            now += delta
            decisions = core.on_tick(now) if isinstance(item, Tick) else core.on_event(event_of(item), now)
            trace.append((now, decisions))
        return trace, core.sizes(), core.next_deadline()

    assert replay() == replay()


@PROPERTY
@given(steps)
def test_memory_stays_bounded_and_pending_matches_next_deadline(sequence: list[Step]) -> None:
    core = DecisionCore(CORE_SETTINGS)
    now = T0
    pending_deadlines: dict[str, datetime] = {}
    for delta, item in sequence:
        now += delta
        decisions = core.on_tick(now) if isinstance(item, Tick) else core.on_event(event_of(item), now)
        for decision in decisions:
            if isinstance(item, Tick) or decision.outcome is Outcome.CANCELLED:
                # every decision a tick makes settles one due pending alert; a cancellation settles one too
                assert isinstance(item, Ev) or pending_deadlines[decision.event.fingerprint] <= now
                pending_deadlines.pop(decision.event.fingerprint)
            elif decision.outcome is Outcome.PENDING:
                assert decision.deadline is not None and decision.deadline > now
                pending_deadlines[decision.event.fingerprint] = decision.deadline
        sizes = core.sizes()
        assert sizes["seen"] <= CORE_SETTINGS.dedupe_max
        assert sizes["resolved"] <= CORE_SETTINGS.dedupe_max
        assert core.next_deadline() == min(pending_deadlines.values(), default=None)


@PROPERTY
@given(steps)
def test_delivering_a_resolution_never_acts_even_mid_incident(sequence: list[Step]) -> None:
    for (_, item), (_, decisions) in zip(sequence, run(sequence), strict=True):
        if isinstance(item, Ev) and item.status is AlertStatus.RESOLVED:
            assert {d.outcome for d in decisions} <= {Outcome.RESOLVED, Outcome.DUPLICATE, Outcome.CANCELLED}
            assert not any(d.acts for d in decisions)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))),
    )
)
def test_iso_writes_any_aware_time_as_utc_with_a_z_and_reads_back_the_same_instant(moment: datetime) -> None:
    text = iso(moment)
    assert text == moment.astimezone(UTC).isoformat().replace("+00:00", "Z")  # the form every record holds
    assert text.endswith("Z") and "+" not in text
    assert parse_iso(text) == moment


def test_with_ids_changes_the_ids_and_nothing_else() -> None:
    event = AlertEvent(
        fingerprint="f1",
        status=AlertStatus.RESOLVED,
        starts_at=T0,
        ends_at=T0 + COOLDOWN,
        labels={"alertname": "A"},
        annotations={"summary": "s"},
        generator_url="http://p",
        forced=True,
    )
    assert event.with_ids(event_id=7, notification_id=3) == replace(event, event_id=7, notification_id=3)
