"""Behaviour of the decision core, one group of tests per rule (see responder/core/decide.py's docstring)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from responder.core.decide import CoreSettings, Decision, DecisionCore
from responder.core.model import AlertEvent, AlertStatus, Outcome, PolicyMode, TargetRef, TrafficRef
from responder.core.rules import PolicyRule, TargetRule, TrafficTemplate
from responder.core.webhook import WebhookNotification, to_event

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PERSIST_FOR = timedelta(minutes=2)
WINDOW = timedelta(seconds=30)
COOLDOWN = timedelta(minutes=15)
CAP_WINDOW = timedelta(minutes=10)

TARGETS = (
    TargetRule(
        name="shop",
        match={"team": "shop"},
        namespace="{namespace}",
        deployment="{app}-canary",
        traffic=(TrafficTemplate("nginx", "{app}-canary"),),
    ),
)
POLICIES = (
    PolicyRule(name="rollback", match={"action": "rollback"}, mode=PolicyMode.IMMEDIATE),
    PolicyRule(
        name="rollback-if-persists",
        match={"action": "rollback-if-persists"},
        mode=PolicyMode.PERSIST,
        persist_for=PERSIST_FOR,
    ),
    PolicyRule(name="notify", match={"action": "notify"}, mode=PolicyMode.NOTIFY),
)

A = TargetRef(namespace="shop", deployment="a-canary", traffic=(TrafficRef("nginx", "a-canary"),))
B = TargetRef(namespace="shop", deployment="b-canary", traffic=(TrafficRef("nginx", "b-canary"),))


def make_core(**overrides: object) -> DecisionCore:
    settings: dict[str, object] = {
        "targets": TARGETS,
        "policies": POLICIES,
        "allowed_namespaces": frozenset({"shop", "pay"}),
        "coalesce_window": WINDOW,
        "cooldown": COOLDOWN,
        "cap_max": 3,
        "cap_window": CAP_WINDOW,
    }
    settings.update(overrides)
    return DecisionCore(CoreSettings(**settings))  # type: ignore[arg-type]


def alert(
    fingerprint: str = "fp-a",
    *,
    status: AlertStatus = AlertStatus.FIRING,
    start: datetime = T0,
    action: str | None = "rollback",
    app: str | None = "a",
    namespace: str = "shop",
    team: str = "shop",
    **extra: str,
) -> AlertEvent:
    labels = {"alertname": "CanaryErrorRate", "team": team, "namespace": namespace, **extra}
    if action is not None:
        labels["action"] = action
    if app is not None:
        labels["app"] = app
    return AlertEvent(fingerprint=fingerprint, status=status, starts_at=start, ends_at=None, labels=labels)


def resolved(fingerprint: str = "fp-a", **kwargs: object) -> AlertEvent:
    return alert(fingerprint, status=AlertStatus.RESOLVED, **kwargs)  # type: ignore[arg-type]


def outcomes(decisions: list[Decision]) -> list[Outcome]:
    return [d.outcome for d in decisions]


def only(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1, decisions
    return decisions[0]


# -- 1. duplicates --


class TestDuplicates:
    def test_same_identity_again_is_a_duplicate_and_does_not_act(self) -> None:
        core = make_core()
        first = only(core.on_event(alert(), T0))
        assert first.outcome is Outcome.ROLLBACK
        again = only(core.on_event(alert(), T0 + timedelta(seconds=1)))
        assert again.outcome is Outcome.DUPLICATE
        assert not again.acts
        assert core.rolled_back(A) == first.incident

    def test_duplicate_of_a_notify_event_is_not_notified_twice(self) -> None:
        core = make_core()
        assert outcomes(core.on_event(alert(action="notify"), T0)) == [Outcome.NOTIFY]
        assert outcomes(core.on_event(alert(action="notify"), T0)) == [Outcome.DUPLICATE]

    def test_duplicate_resolution(self) -> None:
        core = make_core()
        assert outcomes(core.on_event(resolved(), T0)) == [Outcome.RESOLVED]
        assert outcomes(core.on_event(resolved(), T0)) == [Outcome.DUPLICATE]

    def test_labels_and_annotations_are_not_part_of_the_identity(self) -> None:
        core = make_core()
        core.on_event(alert(), T0)
        other_labels = alert(severity="page")
        assert only(core.on_event(other_labels, T0)).outcome is Outcome.DUPLICATE

    def test_ha_peers_with_different_external_url_and_receiver_are_duplicates(self) -> None:
        def notification(external_url: str, receiver: str) -> AlertEvent:
            payload = {
                "version": "4",
                "groupKey": '{}:{alertname="CanaryErrorRate"}',
                "status": "firing",
                "receiver": receiver,
                "externalURL": external_url,
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {"team": "shop", "namespace": "shop", "app": "a", "action": "rollback"},
                        "startsAt": "2025-03-01T12:00:00.123456789Z",
                        "endsAt": "0001-01-01T00:00:00Z",
                        "fingerprint": "0123abcd",
                    }
                ],
            }
            return to_event(WebhookNotification.model_validate(payload).alerts[0])

        core = make_core()
        peer1 = notification("http://am-0:9093", "responder")
        peer2 = notification("http://am-1:9093", "web\\.hook")
        assert only(core.on_event(peer1, T0)).outcome is Outcome.ROLLBACK
        assert only(core.on_event(peer2, T0 + timedelta(seconds=2))).outcome is Outcome.DUPLICATE

    def test_same_fingerprint_with_a_new_starts_at_is_not_a_duplicate(self) -> None:
        core = make_core()
        core.on_event(alert(), T0)
        later = alert(start=T0 + timedelta(minutes=1))
        # not a duplicate: a new firing of the same alert, which meets the rolled-back target in its window
        assert only(core.on_event(later, T0 + timedelta(seconds=5))).outcome is Outcome.COALESCED

    def test_same_fingerprint_and_start_with_other_status_is_not_a_duplicate(self) -> None:
        core = make_core()
        core.on_event(alert(), T0)
        assert outcomes(core.on_event(resolved(), T0 + timedelta(minutes=1))) == [Outcome.RESOLVED]


# -- 2. resolutions --


class TestResolved:
    @pytest.mark.parametrize("action", ["rollback", "rollback-if-persists", "notify", None])
    def test_a_resolution_never_acts(self, action: str | None) -> None:
        core = make_core()
        decision = only(core.on_event(resolved(action=action), T0))
        assert decision.outcome is Outcome.RESOLVED
        assert not decision.acts
        assert decision.incident is None
        assert core.rolled_back(A) is None
        assert core.next_deadline() is None

    def test_resolution_cancels_the_pending_persist_alert(self) -> None:
        core = make_core()
        pending = only(core.on_event(alert(action="rollback-if-persists"), T0))
        assert pending.outcome is Outcome.PENDING
        decisions = core.on_event(resolved(action="rollback-if-persists"), T0 + timedelta(minutes=1))
        assert outcomes(decisions) == [Outcome.RESOLVED, Outcome.CANCELLED]
        cancelled = decisions[1]
        assert cancelled.event == pending.event
        assert cancelled.target == A
        assert cancelled.policy == "rollback-if-persists"
        assert core.next_deadline() is None
        assert core.on_tick(T0 + PERSIST_FOR) == []
        assert core.on_tick(T0 + PERSIST_FOR * 10) == []
        assert core.rolled_back(A) is None

    def test_an_older_resolution_does_not_cancel_a_newer_pending_alert(self) -> None:
        core = make_core()
        start = T0 + timedelta(minutes=5)
        core.on_event(alert(action="rollback-if-persists", start=start), start)
        decisions = core.on_event(resolved(action="rollback-if-persists", start=T0), start + timedelta(seconds=1))
        assert outcomes(decisions) == [Outcome.RESOLVED]
        assert core.next_deadline() == start + PERSIST_FOR
        assert outcomes(core.on_tick(start + PERSIST_FOR)) == [Outcome.ROLLBACK]

    def test_resolution_of_another_fingerprint_does_not_cancel(self) -> None:
        core = make_core()
        core.on_event(alert("fp-1", action="rollback-if-persists"), T0)
        assert outcomes(core.on_event(resolved("fp-2"), T0)) == [Outcome.RESOLVED]
        assert core.next_deadline() == T0 + PERSIST_FOR


# -- 3. stale firing events --


class TestStale:
    def test_firing_delivered_after_its_resolution_is_stale(self) -> None:
        core = make_core()
        core.on_event(resolved(), T0 + timedelta(minutes=3))
        decision = only(core.on_event(alert(), T0 + timedelta(minutes=3, seconds=1)))
        assert decision.outcome is Outcome.STALE
        assert core.rolled_back(A) is None

    def test_firing_older_than_the_resolution_is_stale(self) -> None:
        core = make_core()
        core.on_event(resolved(start=T0), T0 + timedelta(minutes=3))
        older = alert(start=T0 - timedelta(hours=1))
        assert only(core.on_event(older, T0 + timedelta(minutes=4))).outcome is Outcome.STALE

    def test_a_late_older_resolution_does_not_shrink_the_stale_horizon(self) -> None:
        core = make_core()
        newer, older = T0 + timedelta(minutes=10), T0
        core.on_event(resolved(start=newer), newer + timedelta(minutes=1))
        core.on_event(resolved(start=older), newer + timedelta(minutes=2))  # delayed delivery of an old resolution
        between = alert(start=T0 + timedelta(minutes=5))
        assert outcomes(core.on_event(between, newer + timedelta(minutes=3))) == [Outcome.STALE]

    def test_stale_persist_alert_does_not_become_pending(self) -> None:
        core = make_core()
        core.on_event(resolved(action="rollback-if-persists"), T0)
        assert outcomes(core.on_event(alert(action="rollback-if-persists"), T0)) == [Outcome.STALE]
        assert core.next_deadline() is None

    def test_firing_again_later_acts_again_once_the_cooldown_allows(self) -> None:
        core = make_core()
        first = only(core.on_event(alert(), T0))
        assert first.outcome is Outcome.ROLLBACK
        core.on_event(resolved(), T0 + timedelta(minutes=5))
        # the same alert fires again (same fingerprint, newer startsAt) inside the cooldown: suppressed
        refire = T0 + timedelta(minutes=10)
        suppressed = only(core.on_event(alert(start=refire), refire))
        assert suppressed.outcome is Outcome.SUPPRESSED
        assert suppressed.incident == first.incident
        core.on_event(resolved(start=refire), refire + timedelta(minutes=1))
        # and again after the cooldown: a new rollback
        third = T0 + COOLDOWN + timedelta(minutes=1)
        again = only(core.on_event(alert(start=third), third))
        assert again.outcome is Outcome.ROLLBACK
        assert again.incident != first.incident


# -- 4. policies and targets --


class TestPolicyAndTarget:
    def test_notify_only_policy_never_acts(self) -> None:
        core = make_core()
        decision = only(core.on_event(alert(action="notify"), T0))
        assert decision.outcome is Outcome.NOTIFY
        assert decision.policy == "notify"
        assert decision.target == A
        assert not decision.acts
        assert core.rolled_back(A) is None

    def test_notify_for_an_unknown_target_still_notifies(self) -> None:
        core = make_core()
        decision = only(core.on_event(alert(action="notify", team="other"), T0))
        assert decision.outcome is Outcome.NOTIFY
        assert decision.target is None

    @pytest.mark.parametrize("action", [None, "page-someone", "ROLLBACK"])
    def test_unmatched_policy_is_only_recorded(self, action: str | None) -> None:
        core = make_core()
        decision = only(core.on_event(alert(action=action), T0))
        assert decision.outcome is Outcome.IGNORED
        assert decision.policy == "unmatched"
        assert core.rolled_back(A) is None

    def test_unknown_target_is_refused_with_a_reason(self) -> None:
        core = make_core()
        decision = only(core.on_event(alert(team="payments"), T0))
        assert decision.outcome is Outcome.REFUSED
        assert decision.target is None
        assert decision.policy == "rollback"
        assert "no target rule matches" in decision.reason

    def test_namespace_outside_the_allowlist_is_refused(self) -> None:
        core = make_core()
        decision = only(core.on_event(alert(namespace="kube-system"), T0))
        assert decision.outcome is Outcome.REFUSED
        assert "'kube-system'" in decision.reason
        assert "allowlist" in decision.reason

    def test_missing_template_label_is_refused(self) -> None:
        core = make_core()
        decision = only(core.on_event(alert(app=None), T0))
        assert decision.outcome is Outcome.REFUSED
        assert "'shop'" in decision.reason
        assert "missing" in decision.reason

    def test_empty_template_label_is_refused(self) -> None:
        core = make_core()
        assert only(core.on_event(alert(app=""), T0)).outcome is Outcome.REFUSED

    def test_rendered_name_that_is_not_a_kubernetes_name_is_refused(self) -> None:
        core = make_core()
        decision = only(core.on_event(alert(app="Bad_App"), T0))
        assert decision.outcome is Outcome.REFUSED
        assert "not valid Kubernetes names" in decision.reason

    def test_persist_alert_for_unknown_target_is_refused_not_pending(self) -> None:
        core = make_core()
        assert outcomes(core.on_event(alert(action="rollback-if-persists", team="x"), T0)) == [Outcome.REFUSED]
        assert core.next_deadline() is None

    def test_immediate_policy_rolls_back(self) -> None:
        core = make_core()
        decision = only(core.on_event(alert(), T0))
        assert decision.outcome is Outcome.ROLLBACK
        assert decision.acts
        assert decision.target == A
        assert decision.policy == "rollback"
        assert decision.incident is not None and decision.incident.startswith("shop:a-canary:")
        assert core.rolled_back(A) == decision.incident
        assert core.rolled_back(B) is None

    def test_first_matching_policy_wins(self) -> None:
        policies = (PolicyRule(name="first", match={"team": "shop"}, mode=PolicyMode.NOTIFY), *POLICIES)
        core = make_core(policies=policies)
        decision = only(core.on_event(alert(), T0))
        assert (decision.outcome, decision.policy) == (Outcome.NOTIFY, "first")


# -- 5. persist policy --


class TestPersist:
    def test_pending_then_rollback_at_the_deadline_not_before(self) -> None:
        core = make_core()
        event = alert(action="rollback-if-persists")
        pending = only(core.on_event(event, T0))
        deadline = T0 + PERSIST_FOR
        assert pending.outcome is Outcome.PENDING
        assert pending.deadline == deadline
        assert pending.target == A
        assert core.next_deadline() == deadline
        assert core.rolled_back(A) is None

        assert core.on_tick(T0 + timedelta(seconds=1)) == []
        assert core.on_tick(deadline - timedelta(microseconds=1)) == []
        assert core.rolled_back(A) is None

        decision = only(core.on_tick(deadline))
        assert decision.outcome is Outcome.ROLLBACK
        assert decision.event == event
        assert decision.policy == "rollback-if-persists"
        assert core.rolled_back(A) == decision.incident
        assert core.next_deadline() is None
        assert core.on_tick(deadline + timedelta(seconds=1)) == []

    def test_deadline_counts_from_starts_at_not_arrival(self) -> None:
        core = make_core()
        decision = only(core.on_event(alert(action="rollback-if-persists"), T0 + timedelta(seconds=90)))
        assert decision.outcome is Outcome.PENDING
        assert decision.deadline == T0 + PERSIST_FOR

    @pytest.mark.parametrize("late", [timedelta(0), timedelta(seconds=1), timedelta(hours=1)])
    def test_deadline_already_passed_at_arrival_rolls_back_immediately(self, late: timedelta) -> None:
        core = make_core()
        decision = only(core.on_event(alert(action="rollback-if-persists"), T0 + PERSIST_FOR + late))
        assert decision.outcome is Outcome.ROLLBACK
        assert core.next_deadline() is None

    def test_late_tick_still_rolls_back(self) -> None:
        core = make_core()
        core.on_event(alert(action="rollback-if-persists"), T0)
        assert outcomes(core.on_tick(T0 + timedelta(minutes=7))) == [Outcome.ROLLBACK]

    def test_due_pendings_are_decided_in_deadline_order(self) -> None:
        core = make_core()
        later = alert("fp-late", action="rollback-if-persists", app="b", start=T0 + timedelta(seconds=10))
        earlier = alert("fp-early", action="rollback-if-persists", app="a", start=T0)
        core.on_event(later, T0 + timedelta(seconds=10))
        core.on_event(earlier, T0 + timedelta(seconds=11))
        assert core.next_deadline() == T0 + PERSIST_FOR
        decisions = core.on_tick(T0 + timedelta(minutes=5))
        assert [d.event.fingerprint for d in decisions] == ["fp-early", "fp-late"]
        assert outcomes(decisions) == [Outcome.ROLLBACK, Outcome.ROLLBACK]

    def test_pending_target_rolled_back_meanwhile_is_coalesced_at_the_deadline(self) -> None:
        core = make_core()
        core.on_event(alert("fp-slow", action="rollback-if-persists"), T0)
        rollback = only(core.on_event(alert("fp-fast"), T0 + PERSIST_FOR - timedelta(seconds=10)))
        assert rollback.outcome is Outcome.ROLLBACK
        joined = only(core.on_tick(T0 + PERSIST_FOR))
        assert joined.outcome is Outcome.COALESCED
        assert joined.incident == rollback.incident

    def test_persist_alert_for_an_already_rolled_back_target_joins_without_waiting(self) -> None:
        core = make_core()
        rollback = only(core.on_event(alert("fp-fast"), T0))
        joined = only(core.on_event(alert("fp-slow", action="rollback-if-persists"), T0 + timedelta(seconds=5)))
        assert joined.outcome is Outcome.COALESCED
        assert joined.incident == rollback.incident
        assert core.next_deadline() is None


# -- 6. coalescing, cooldown --


class TestCoalesceAndCooldown:
    def test_several_alerts_for_one_target_within_the_window_give_one_rollback(self) -> None:
        core = make_core()
        first = only(core.on_event(alert("fp-1"), T0))
        second = only(core.on_event(alert("fp-2", alertname="CanaryLatency"), T0 + timedelta(seconds=10)))
        third = only(core.on_event(alert("fp-3"), T0 + WINDOW - timedelta(microseconds=1)))
        assert first.outcome is Outcome.ROLLBACK
        assert [second.outcome, third.outcome] == [Outcome.COALESCED, Outcome.COALESCED]
        assert first.incident is not None
        assert second.incident == third.incident == first.incident
        assert second.target == A

    def test_after_the_window_inside_the_cooldown_is_suppressed(self) -> None:
        core = make_core()
        first = only(core.on_event(alert("fp-1"), T0))
        at_edge = only(core.on_event(alert("fp-2"), T0 + WINDOW))
        later = only(core.on_event(alert("fp-3"), T0 + COOLDOWN - timedelta(microseconds=1)))
        assert [at_edge.outcome, later.outcome] == [Outcome.SUPPRESSED, Outcome.SUPPRESSED]
        assert at_edge.incident == later.incident == first.incident
        assert not later.acts

    def test_after_the_cooldown_rolls_back_again(self) -> None:
        core = make_core()
        first = only(core.on_event(alert("fp-1"), T0))
        again = only(core.on_event(alert("fp-2"), T0 + COOLDOWN))
        assert again.outcome is Outcome.ROLLBACK
        assert again.incident != first.incident
        assert core.rolled_back(A) == again.incident

    def test_rolled_back_state_is_forgotten_after_the_cooldown(self) -> None:
        core = make_core()
        core.on_event(alert(), T0)
        assert core.sizes()["rolled_back"] == 1
        core.on_tick(T0 + COOLDOWN)
        assert core.sizes()["rolled_back"] == 0
        assert core.rolled_back(A) is None

    def test_two_targets_roll_back_independently(self) -> None:
        core = make_core()
        a = only(core.on_event(alert("fp-a", app="a"), T0))
        b = only(core.on_event(alert("fp-b", app="b"), T0 + timedelta(seconds=1)))
        assert [a.outcome, b.outcome] == [Outcome.ROLLBACK, Outcome.ROLLBACK]
        assert (a.target, b.target) == (A, B)
        assert a.incident != b.incident
        assert core.rolled_back(A) == a.incident
        assert core.rolled_back(B) == b.incident

    def test_mark_live_lets_a_new_rollback_happen(self) -> None:
        core = make_core()
        first = only(core.on_event(alert("fp-1"), T0))
        core.mark_live(B)  # another target: no effect on A
        assert core.rolled_back(A) == first.incident
        core.mark_live(A)
        assert core.rolled_back(A) is None
        second = only(core.on_event(alert("fp-2"), T0 + timedelta(minutes=1)))
        assert second.outcome is Outcome.ROLLBACK
        assert second.incident != first.incident

    def test_mark_live_on_a_target_never_rolled_back_is_harmless(self) -> None:
        core = make_core()
        core.mark_live(A)
        assert only(core.on_event(alert(), T0)).outcome is Outcome.ROLLBACK


# -- 7. global cap --


class TestGlobalCap:
    def test_cap_reached_holds_for_a_human(self) -> None:
        core = make_core(cap_max=2)
        assert only(core.on_event(alert("f1", app="a"), T0)).outcome is Outcome.ROLLBACK
        assert only(core.on_event(alert("f2", app="b"), T0 + timedelta(minutes=1))).outcome is Outcome.ROLLBACK
        held = only(core.on_event(alert("f3", app="c"), T0 + timedelta(minutes=2)))
        assert held.outcome is Outcome.HELD
        assert not held.acts
        assert held.incident is None
        assert "cap" in held.reason
        assert held.target == TargetRef("shop", "c-canary", (TrafficRef("nginx", "c-canary"),))
        assert core.rolled_back(held.target) is None

    def test_cap_frees_up_after_the_window(self) -> None:
        core = make_core(cap_max=1)
        core.on_event(alert("f1", app="a"), T0)
        assert only(core.on_event(alert("f2", app="b"), T0 + CAP_WINDOW - timedelta(seconds=1))).outcome is (
            Outcome.HELD
        )
        freed = only(core.on_event(alert("f3", app="b"), T0 + CAP_WINDOW))
        assert freed.outcome is Outcome.ROLLBACK

    def test_coalesced_and_suppressed_alerts_do_not_count_against_the_cap(self) -> None:
        core = make_core(cap_max=2)
        core.on_event(alert("f1", app="a"), T0)
        core.on_event(alert("f2", app="a"), T0 + timedelta(seconds=1))  # coalesced
        core.on_event(alert("f3", app="a"), T0 + timedelta(minutes=1))  # suppressed
        assert only(core.on_event(alert("f4", app="b"), T0 + timedelta(minutes=2))).outcome is Outcome.ROLLBACK

    def test_persist_alert_at_its_deadline_can_be_held(self) -> None:
        core = make_core(cap_max=1)
        core.on_event(alert("slow", app="b", action="rollback-if-persists"), T0)
        core.on_event(alert("fast", app="a"), T0 + timedelta(seconds=1))
        assert outcomes(core.on_tick(T0 + PERSIST_FOR)) == [Outcome.HELD]


# -- 8. bounded, expiring memory --


class TestDedupeMemory:
    def test_memory_is_bounded_by_dedupe_max(self) -> None:
        core = make_core(dedupe_max=3)
        for i in range(5):
            core.on_event(resolved(f"fp-{i}"), T0 + timedelta(seconds=i))
        sizes = core.sizes()
        assert sizes["seen"] == 3
        assert sizes["resolved"] == 3
        # the oldest identities were evicted: they are decided afresh, the newest are still duplicates
        assert outcomes(core.on_event(resolved("fp-0"), T0 + timedelta(seconds=10))) == [Outcome.RESOLVED]
        assert outcomes(core.on_event(resolved("fp-4"), T0 + timedelta(seconds=10))) == [Outcome.DUPLICATE]
        assert core.sizes()["seen"] == 3

    def test_memory_expires_after_dedupe_ttl(self) -> None:
        ttl = timedelta(hours=1)
        core = make_core(dedupe_ttl=ttl)
        core.on_event(resolved("fp-1"), T0)
        core.on_event(alert("fp-2", action="notify"), T0 + timedelta(minutes=1))
        assert core.sizes()["seen"] == 2
        assert core.sizes()["resolved"] == 1

        core.on_tick(T0 + ttl - timedelta(microseconds=1))
        assert core.sizes()["seen"] == 2
        core.on_tick(T0 + ttl)
        assert core.sizes() == {"seen": 1, "resolved": 0, "pending": 0, "rolled_back": 0, "failing": 0}
        core.on_tick(T0 + ttl + timedelta(minutes=1))
        assert core.sizes()["seen"] == 0

        # forgotten: the same identity is decided again rather than reported as a duplicate
        assert outcomes(core.on_event(resolved("fp-1"), T0 + ttl * 2)) == [Outcome.RESOLVED]

    def test_a_repeat_keeps_the_identity_remembered(self) -> None:
        ttl = timedelta(hours=1)
        core = make_core(dedupe_ttl=ttl)
        core.on_event(resolved(), T0)
        core.on_event(resolved(), T0 + timedelta(minutes=50))
        assert outcomes(core.on_event(resolved(), T0 + timedelta(minutes=100))) == [Outcome.DUPLICATE]

    def test_resolution_memory_expiry_ends_staleness(self) -> None:
        ttl = timedelta(hours=1)
        core = make_core(dedupe_ttl=ttl)
        core.on_event(resolved(), T0)
        assert outcomes(core.on_event(alert(), T0 + timedelta(minutes=1))) == [Outcome.STALE]
        # once the resolution is forgotten the (now unknown) firing identity is decided on its merits
        assert outcomes(core.on_event(alert(), T0 + ttl * 3)) == [Outcome.ROLLBACK]
