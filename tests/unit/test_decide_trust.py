"""The decision core never stops deciding and never forgets what became of a rollback (issue: fail loud).

Edges of time (years 1 and 9999), refusals and failures that changed nothing, failed rollbacks retried while their
alerts fire, restores, and the restart equivalence the engine relies on (``state()`` after feeding the same
inputs again)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from test_decide import (
    COOLDOWN,
    T0,
    A,
    B,
    alert,
    make_core,
    only,
    outcomes,
    resolved,
)

from responder.core.decide import EARLIEST, LATEST, DecisionCore, ResultStatus, shifted
from responder.core.model import Outcome

YEAR_9999 = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
YEAR_1 = datetime(1, 1, 1, tzinfo=UTC)
RETRY = timedelta(seconds=30)


class TestCalendarEdges:
    def test_shifted_saturates_instead_of_overflowing(self) -> None:
        assert shifted(YEAR_9999, timedelta(days=2)) == LATEST
        assert shifted(YEAR_9999, timedelta(0)) == YEAR_9999
        assert shifted(YEAR_1, -timedelta(days=2)) == EARLIEST
        assert shifted(T0, timedelta(minutes=1)) == T0 + timedelta(minutes=1)

    def test_persist_alert_starting_in_year_9999_is_pending_not_a_crash(self) -> None:
        core = make_core()
        decision = only(core.on_event(alert(action="rollback-if-persists", start=YEAR_9999), T0))
        assert decision.outcome is Outcome.PENDING
        assert decision.deadline == T0 + timedelta(minutes=2)  # a start in the future counts from now
        assert only(core.on_tick(T0 + timedelta(minutes=2))).outcome is Outcome.ROLLBACK
        assert only(core.on_event(alert("fp-b", app="b"), T0)).outcome is Outcome.ROLLBACK

    def test_alert_starting_in_year_1_decides(self) -> None:
        core = make_core()
        assert only(core.on_event(alert(action="rollback-if-persists", start=YEAR_1), T0)).outcome is Outcome.ROLLBACK
        assert only(core.on_event(resolved("fp-x", start=YEAR_1), T0)).outcome is Outcome.RESOLVED

    def test_huge_durations_in_the_settings_saturate(self) -> None:
        core = make_core(dedupe_ttl=timedelta(days=366), cooldown=timedelta(days=366))
        late = datetime(9999, 6, 1, tzinfo=UTC)
        assert only(core.on_event(alert(), late)).outcome is Outcome.ROLLBACK
        assert only(core.on_event(alert("fp-b"), late)).outcome is Outcome.COALESCED


class TestCapCountsChanges:
    def test_refusals_that_changed_nothing_give_their_cap_slot_back(self) -> None:
        core = make_core(cap_max=3)
        for n, app in enumerate(("ghost1", "ghost2", "ghost3")):
            decision = only(core.on_event(alert(f"fp-{app}", app=app), T0 + timedelta(seconds=n)))
            assert decision.outcome is Outcome.ROLLBACK
            assert decision.target is not None and decision.incident is not None
            core.on_result(
                incident=decision.incident, target=decision.target, status=ResultStatus.REFUSED, changed=False, now=T0
            )
        assert only(core.on_event(alert("fp-real", app="real"), T0 + timedelta(seconds=5))).outcome is Outcome.ROLLBACK

    def test_a_refused_target_is_not_rolled_back(self) -> None:
        core = make_core()
        first = only(core.on_event(alert(), T0))
        assert first.incident is not None and first.target is not None
        core.on_result(incident=first.incident, target=first.target, status=ResultStatus.REFUSED, changed=False, now=T0)
        assert only(core.on_event(alert("fp-2"), T0 + timedelta(minutes=1))).outcome is Outcome.ROLLBACK

    def test_done_rollbacks_keep_counting(self) -> None:
        core = make_core(cap_max=1)
        first = only(core.on_event(alert(), T0))
        assert first.incident is not None and first.target is not None
        core.on_result(incident=first.incident, target=first.target, status=ResultStatus.DONE, changed=True, now=T0)
        assert only(core.on_event(alert("fp-b", app="b"), T0)).outcome is Outcome.HELD


def failed_rollback(core_kwargs: dict[str, object] | None = None) -> tuple[DecisionCore, str]:
    core = make_core(retry_interval=RETRY, max_retry_interval=timedelta(minutes=4), **(core_kwargs or {}))
    first = only(core.on_event(alert(), T0))
    assert first.incident is not None and first.target is not None
    core.on_result(incident=first.incident, target=first.target, status=ResultStatus.FAILED, changed=True, now=T0)
    return core, first.incident


class TestFailedMeansFailed:
    def test_a_new_alert_for_a_failed_target_acts_at_once(self) -> None:
        core, incident = failed_rollback()
        decision = only(core.on_event(alert("fp-other", alertname="CanaryHighLatencyP95"), T0 + timedelta(seconds=1)))
        assert decision.outcome is Outcome.RETRY
        assert decision.incident == incident and decision.attempt == 1

    def test_retried_on_a_doubling_schedule_while_its_alert_fires(self) -> None:
        core, incident = failed_rollback()
        assert core.on_tick(T0 + RETRY - timedelta(seconds=1)) == []
        retries = []
        now = T0
        for _ in range(5):
            deadline = core.next_deadline()
            assert deadline is not None
            now = deadline
            decision = only(core.on_tick(now))
            assert decision.outcome is Outcome.RETRY and decision.incident == incident
            retries.append(now)
            core.on_result(incident=incident, target=A, status=ResultStatus.FAILED, changed=False, now=now)
        gaps = [later - earlier for earlier, later in zip(retries, retries[1:], strict=False)]
        assert gaps == [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=120), timedelta(minutes=4)]

    def test_retries_stop_when_its_alerts_resolve(self) -> None:
        core, incident = failed_rollback()
        decisions = core.on_event(resolved(), T0 + timedelta(seconds=5))
        assert outcomes(decisions) == [Outcome.RESOLVED, Outcome.CANCELLED]
        assert decisions[1].incident == incident
        assert core.next_deadline() is None
        assert core.on_tick(T0 + timedelta(hours=1)) == []

    def test_retries_wait_while_paused_and_go_on_after(self) -> None:
        core, incident = failed_rollback()
        core.set_paused("by ops: freeze")
        assert core.on_tick(T0 + timedelta(minutes=5)) == []
        held = only(core.on_event(alert("fp-new"), T0 + timedelta(minutes=5)))
        assert held.outcome is Outcome.HELD and held.incident == incident
        core.set_paused(None)
        assert only(core.on_tick(T0 + timedelta(minutes=10))).outcome is Outcome.RETRY

    def test_a_retry_that_succeeds_puts_the_target_in_cooldown(self) -> None:
        core, incident = failed_rollback()
        retry = only(core.on_tick(T0 + RETRY))
        assert retry.outcome is Outcome.RETRY
        during = only(core.on_event(alert("fp-during"), T0 + RETRY))
        assert during.outcome is Outcome.COALESCED and during.incident == incident
        core.on_result(incident=incident, target=A, status=ResultStatus.DONE, changed=True, now=T0 + RETRY)
        later = only(core.on_event(alert("fp-later"), T0 + RETRY + timedelta(minutes=1)))
        assert later.outcome is Outcome.SUPPRESSED and later.incident == incident
        assert core.next_deadline() is None

    def test_a_restore_ends_the_failing_state(self) -> None:
        core, _ = failed_rollback()
        core.mark_live(A)
        assert core.next_deadline() is None
        assert only(core.on_event(alert("fp-new"), T0 + timedelta(seconds=1))).outcome is Outcome.ROLLBACK

    def test_retries_respect_the_cap_when_they_did_not_count(self) -> None:
        core, incident = failed_rollback({"cap_max": 1})
        core.on_result(incident=incident, target=A, status=ResultStatus.FAILED, changed=False, now=T0)
        other = only(core.on_event(alert("fp-b", app="b"), T0 + timedelta(seconds=1)))
        assert other.outcome is Outcome.ROLLBACK  # the failed one gave its slot back
        held = only(core.on_tick(T0 + timedelta(minutes=1)))
        assert held.outcome is Outcome.HELD and held.incident == incident


class TestRestartEquivalence:
    def test_feeding_the_same_inputs_again_gives_the_same_state(self) -> None:
        def run() -> dict[str, object]:
            core = make_core(retry_interval=RETRY)
            core.on_event(alert(action="rollback-if-persists"), T0)
            first = only(core.on_event(alert("fp-b", app="b"), T0 + timedelta(seconds=1)))
            assert first.incident is not None
            core.on_result(incident=first.incident, target=B, status=ResultStatus.FAILED, changed=True, now=T0)
            core.set_paused("by me: test")
            core.on_tick(T0 + timedelta(minutes=3))
            core.set_paused(None)
            core.on_tick(T0 + timedelta(minutes=4))
            core.mark_live(A)
            core.on_event(resolved("fp-b", app="b"), T0 + COOLDOWN)
            return core.state()

        assert run() == run()
