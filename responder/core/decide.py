"""The decision core: a deterministic state machine over alert events, timer ticks and what became of rollbacks.

``DecisionCore.on_event(event, now)`` and ``on_tick(now)`` return decisions; they never perform I/O, never read a
clock and never raise on bad luck in the outside world. The engine owns time (it passes ``now``) and carries
the decisions out. Every input that changes the state (events and ticks, pause changes, restores, rollback results)
is recorded by the engine in order, so a restarted engine feeds them again and reaches the same state: a restart
changes no later decision. :meth:`DecisionCore.state` exposes that state as plain data so tests can compare.

Rules, in the order they are applied to an event:
1. identity ``(fingerprint, status, startsAt)`` seen before -> DUPLICATE (HA peers, retries, repeat_interval);
2. resolved -> RESOLVED, never an action; it cancels a pending persist-policy alert of the same fingerprint, and
   when the last firing alert of a failed rollback resolves, the retries of that rollback stop (CANCELLED);
3. firing whose startsAt is not newer than a resolution already seen for that fingerprint -> STALE;
4. no policy matches (or an ``ignore`` policy) -> IGNORED; notify-only policy -> NOTIFY; no target (or a namespace
   outside the allowlist) -> REFUSED;
5. a failed rollback of the target (still "live and failing"): any acting alert tries it again at once -> RETRY;
6. target already rolled back: inside the coalescing window -> COALESCED into that rollback, later inside the
   cooldown -> SUPPRESSED;
7. persist policy before its deadline (``min(startsAt, now) + persist_for``) -> PENDING (a tick at the deadline
   re-asks the core);
8. responder paused by an admin -> HELD; global cap of rollbacks per window reached -> HELD; otherwise ROLLBACK.
An admin replay with ``force`` skips rules 1, 3 and 6 (dedupe, staleness, cooldown), never the cap, the pause,
the target mapping or the executor's live safety checks.

What became of a rollback comes back through :meth:`DecisionCore.on_result`: a refused one leaves the target live
(nothing was rolled back), a failed one makes it "live and failing" (retried on a slower schedule while any of its
alerts fires), and one that changed nothing gives its slot in the global cap back. Date arithmetic saturates at
the ends of the calendar instead of overflowing, so no timestamp can stop the core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from responder.core.model import AlertEvent, AlertStatus, Outcome, PolicyMode, ResultStatus, TargetRef
from responder.core.rules import PolicyRule, Resolved, TargetRule, resolve_target, select_policy
from responder.core.state import EARLIEST, LATEST, Expiring, Failing, Pending, Rollback, shifted

_T = TypeVar("_T")
__all__ = ["EARLIEST", "LATEST", "CoreSettings", "Decision", "DecisionCore", "ResultStatus", "shifted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreSettings:
    targets: tuple[TargetRule, ...]
    policies: tuple[PolicyRule, ...]
    allowed_namespaces: frozenset[str]
    coalesce_window: timedelta = timedelta(seconds=30)
    cooldown: timedelta = timedelta(minutes=15)
    cap_max: int = 3
    cap_window: timedelta = timedelta(minutes=10)
    dedupe_ttl: timedelta = timedelta(hours=6)
    dedupe_max: int = 100_000
    # Multi-cluster: cluster name -> its namespace allowlist; the alert label ``cluster_label`` selects one and
    # an alert naming no configured cluster is REFUSED. None: one cluster, targets carry cluster "".
    clusters: Mapping[str, frozenset[str]] | None = None
    cluster_label: str = "cluster"
    # A failed rollback is tried again after retry_interval, then at doubling intervals up to max_retry_interval,
    # while any of its alerts still fires.
    retry_interval: timedelta = timedelta(seconds=30)
    max_retry_interval: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    outcome: Outcome
    event: AlertEvent
    reason: str
    policy: str = ""
    target: TargetRef | None = None
    incident: str | None = None  # the rollback this decision started, joined or tries again
    deadline: datetime | None = None  # PENDING only
    attempt: int = 0  # RETRY: which retry this is (1 for the first)

    @property
    def acts(self) -> bool:
        return self.outcome in (Outcome.ROLLBACK, Outcome.RETRY)


class DecisionCore:
    """All decision state for one responder; see the module docstring for the rules."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self._seen = Expiring(settings.dedupe_ttl, settings.dedupe_max)
        self._resolved = Expiring(settings.dedupe_ttl, settings.dedupe_max)  # fingerprint -> startsAt
        self._rolled_back: dict[str, Rollback] = {}
        self._recent: list[tuple[datetime, str]] = []  # (when, incident) of the rollbacks the cap counts
        self._pending: dict[str, Pending] = {}
        self._failing: dict[str, Failing] = {}
        self._named: dict[str, tuple[datetime, int]] = {}  # target -> (instant, count) of its last incident name
        self.paused: str | None = None  # why and by whom, while an admin has paused the responder

    # -- inputs --

    def set_paused(self, why: str | None) -> None:
        """While paused every decision that would act is HELD instead, and nothing is marked rolled back."""
        self.paused = why

    def on_event(self, event: AlertEvent, now: datetime) -> list[Decision]:
        self._expire(now)
        if self._seen.get(event.identity) is not None and not event.forced:
            self._seen.put(event.identity, True, now)  # a repeat keeps the identity remembered
            return [Decision(outcome=Outcome.DUPLICATE, event=event, reason="already seen")]
        self._seen.put(event.identity, True, now)
        if event.status is AlertStatus.RESOLVED:
            return self._on_resolved(event, now)
        return self._on_firing(event, now)

    def on_tick(self, now: datetime) -> list[Decision]:
        """Re-ask pending persist-policy alerts whose deadline has come, and retry failed rollbacks that are due.

        One entry that cannot be decided (a bug) is dropped with an ERROR decision; the others still are."""
        self._expire(now)
        decisions: list[Decision] = []
        due = sorted((p for p in self._pending.values() if p.deadline <= now), key=lambda p: p.deadline)
        for pending in due:
            del self._pending[pending.event.fingerprint]
            decisions.append(self._guarded(pending.event, self._act_on_deadline, pending, now))
        if self.paused is None:
            for _, failing in sorted(self._failing.items(), key=lambda item: item[0]):
                if not failing.in_flight and failing.next_at <= now:
                    decisions.append(self._guarded(failing.latest, self._retry_on_timer, failing, now))
        return decisions

    def on_result(self, *, incident: str, target: TargetRef, status: str, changed: bool, now: datetime) -> None:
        """What became of a rollback (or of one of its retries): ``status`` is its final status, ``changed``
        whether any of its steps changed anything in the cluster (only those count against the global cap)."""
        self._expire(now)
        if not changed:
            self._recent = [(at, name) for at, name in self._recent if name != incident]
        key = target.key
        rolled = self._rolled_back.get(key)
        failing = self._failing.get(key)
        if failing is not None and failing.incident == incident:
            failing.in_flight = False
        mine = rolled if rolled is not None and rolled.incident == incident else None
        if status in (ResultStatus.REFUSED, ResultStatus.ABANDONED):
            if mine is not None:
                del self._rolled_back[key]  # nothing was rolled back: the next alert may act again
            if failing is not None and failing.incident == incident:
                del self._failing[key]
        elif status in (ResultStatus.FAILED, ResultStatus.HELD):
            self._on_failed(incident, target, mine, failing, now)
        elif failing is not None and failing.incident == incident:
            # A retry finished the job: the target is rolled back from now on (cooldown, coalescing).
            del self._failing[key]
            self._rolled_back[key] = Rollback(incident, now, failing.policy, dict(failing.events))

    def expire(self, now: datetime) -> None:
        """Forget what has expired by ``now`` (decisions do this themselves; a rebuilt core calls it once)."""
        self._expire(now)

    def mark_live(self, target: TargetRef) -> None:
        """A new canary is live on the target (e.g. restored): it may be rolled back again."""
        self._rolled_back.pop(target.key, None)
        self._failing.pop(target.key, None)

    # -- queries --

    def next_deadline(self) -> datetime | None:
        deadlines = [p.deadline for p in self._pending.values()]
        if self.paused is None:
            deadlines += [f.next_at for f in self._failing.values() if not f.in_flight]
        return min(deadlines, default=None)

    def sizes(self) -> dict[str, int]:
        """How much state the core holds (bounded by dedupe_ttl and dedupe_max; see bench/bench_storm.py)."""
        return {
            "seen": len(self._seen.items),
            "resolved": len(self._resolved.items),
            "pending": len(self._pending),
            "rolled_back": len(self._rolled_back),
            "failing": len(self._failing),
        }

    def repeats(self, identities: Iterable[object], since: datetime) -> bool:
        """Whether :meth:`on_event` would call each alert of these identities DUPLICATE, seen ``since`` or later."""
        return all(self._seen.fresh(identity, since) for identity in identities)

    def rolled_back(self, target: TargetRef) -> str | None:
        state = self._rolled_back.get(target.key)
        return state.incident if state else None

    def failing(self, target: TargetRef) -> str | None:
        state = self._failing.get(target.key)
        return state.incident if state else None

    def state(self) -> dict[str, Any]:
        """Everything that influences later decisions, as plain comparable data (restart equivalence tests)."""

        def events(found: Mapping[str, AlertEvent]) -> list[tuple[str, str, int]]:
            return sorted((fp, e.starts_at.isoformat(), e.event_id) for fp, e in found.items())

        return {
            "seen": [(repr(k), v[0].isoformat()) for k, v in self._seen.items.items()],
            "resolved": [(repr(k), v[0].isoformat(), repr(v[1])) for k, v in self._resolved.items.items()],
            "rolled_back": {
                k: (v.incident, v.at.isoformat(), v.policy.name, events(v.events))
                for k, v in sorted(self._rolled_back.items())
            },
            "recent": [(at.isoformat(), incident) for at, incident in self._recent],
            "pending": {
                k: (v.event.event_id, v.target.key, v.policy.name, v.deadline.isoformat())
                for k, v in sorted(self._pending.items())
            },
            "failing": {
                k: (v.incident, v.attempts, v.next_at.isoformat(), v.in_flight, events(v.events))
                for k, v in sorted(self._failing.items())
            },
            "named": {k: (v[0].isoformat(), v[1]) for k, v in sorted(self._named.items())},
            "paused": self.paused,
        }

    # -- rules --

    def _act_on_deadline(self, pending: Pending, now: datetime) -> Decision:
        reason = f"still firing after {pending.policy.persist_for}"
        return self._act(pending.event, pending.target, pending.policy, now, reason)

    def _retry_on_timer(self, failing: Failing, now: datetime) -> Decision:
        return self._retry(failing, now, "its alerts still fire")

    @staticmethod
    def _guarded(event: AlertEvent, decide: Callable[[_T, datetime], Decision], entry: _T, now: datetime) -> Decision:
        """Run one timer decision; a bug in it gives an ERROR decision for its event instead of stopping the
        others (a pending entry was already removed, and a failing one was rescheduled, so neither spins)."""
        try:
            return decide(entry, now)
        except Exception as exc:  # deliberately broad: the core must not stop deciding
            return Decision(outcome=Outcome.ERROR, event=event, reason=f"could not decide: {type(exc).__name__}: {exc}")

    def _on_resolved(self, event: AlertEvent, now: datetime) -> list[Decision]:
        previous = self._resolved.get(event.fingerprint)
        if not isinstance(previous, datetime) or previous < event.starts_at:
            self._resolved.put(event.fingerprint, event.starts_at, now)
        decisions = [Decision(outcome=Outcome.RESOLVED, event=event, reason="resolved alerts never act")]
        pending = self._pending.get(event.fingerprint)
        if pending is not None and pending.event.starts_at <= event.starts_at:
            del self._pending[event.fingerprint]
            decisions.append(
                Decision(
                    outcome=Outcome.CANCELLED,
                    event=pending.event,
                    target=pending.target,
                    policy=pending.policy.name,
                    reason="resolved before its persist deadline",
                )
            )
        for key, failing in list(self._failing.items()):
            firing = failing.events.get(event.fingerprint)
            if firing is None or firing.starts_at > event.starts_at:
                continue
            del failing.events[event.fingerprint]
            if not failing.events and not failing.in_flight:
                del self._failing[key]
                decisions.append(
                    Decision(
                        outcome=Outcome.CANCELLED,
                        event=firing,
                        target=failing.target,
                        policy=failing.policy.name,
                        incident=failing.incident,
                        reason="its alerts resolved: no longer retrying the failed rollback (check the canary)",
                    )
                )
        return decisions

    def _on_firing(self, event: AlertEvent, now: datetime) -> list[Decision]:
        resolved_start = self._resolved.get(event.fingerprint)
        if isinstance(resolved_start, datetime) and event.starts_at <= resolved_start and not event.forced:
            return [Decision(outcome=Outcome.STALE, event=event, reason="a resolution of this alert was already seen")]
        policy = select_policy(self.settings.policies, event.labels)
        settings = self.settings
        resolved = resolve_target(
            settings.targets,
            event.labels,
            settings.allowed_namespaces,
            clusters=settings.clusters,
            cluster_label=settings.cluster_label,
        )
        if policy.mode is PolicyMode.IGNORE:
            reason = "no policy matches: recorded only" if policy.name == "unmatched" else f"policy {policy.name!r}"
            return [Decision(outcome=Outcome.IGNORED, event=event, policy=policy.name, reason=reason)]
        if policy.mode is PolicyMode.NOTIFY:
            target = resolved.target if isinstance(resolved, Resolved) else None
            return [
                Decision(
                    outcome=Outcome.NOTIFY,
                    event=event,
                    target=target,
                    policy=policy.name,
                    reason=f"policy {policy.name!r} only notifies",
                )
            ]
        if not isinstance(resolved, Resolved):
            return [Decision(outcome=Outcome.REFUSED, event=event, policy=policy.name, reason=resolved.reason)]
        target = resolved.target
        failing = self._failing.get(target.key)
        if failing is not None:
            failing.events[event.fingerprint] = event
            if failing.in_flight:
                return [
                    self._verdict(
                        Outcome.COALESCED, event, failing.policy, target, "joined the retry under way", failing.incident
                    )
                ]
            return [self._retry(failing, now, f"a new alert ({event.alertname}) for a canary still live", event=event)]
        if policy.mode is PolicyMode.PERSIST:
            # Measured from the alert's start, but never from a start in the future (a skewed clock, a bogus
            # stamp): an alert cannot be made to wait longer than persist_for from now.
            deadline = shifted(min(event.starts_at, now), policy.persist_for)
            if deadline > now and (event.forced or self._rolled_back.get(target.key) is None):
                return [self._hold_until(event, target, policy, deadline)]
        return [self._act(event, target, policy, now, f"policy {policy.name!r}")]

    def _hold_until(self, event: AlertEvent, target: TargetRef, policy: PolicyRule, deadline: datetime) -> Decision:
        self._pending[event.fingerprint] = Pending(event, target, policy, deadline)
        return Decision(
            outcome=Outcome.PENDING,
            event=event,
            target=target,
            policy=policy.name,
            deadline=deadline,
            reason=f"must persist for {policy.persist_for} before a rollback",
        )

    @staticmethod
    def _verdict(
        outcome: Outcome,
        event: AlertEvent,
        policy: PolicyRule,
        target: TargetRef,
        reason: str,
        incident: str | None = None,
    ) -> Decision:
        return Decision(
            outcome=outcome, event=event, target=target, policy=policy.name, reason=reason, incident=incident
        )

    def _held(self, counted: bool) -> str | None:
        """Why an action must be held now (paused, or the cap is reached), or None."""
        if self.paused is not None:
            return f"responder paused ({self.paused}); nothing is executed"
        if not counted and len(self._recent) >= self.settings.cap_max:
            cap = f"{self.settings.cap_max} rollbacks per {self.settings.cap_window}"
            return f"global cap of {cap} reached; a human must decide"
        return None

    def _act(self, event: AlertEvent, target: TargetRef, policy: PolicyRule, now: datetime, why: str) -> Decision:
        failing = self._failing.get(target.key)
        if failing is not None:  # a persist timer fired for a target whose rollback failed meanwhile
            failing.events[event.fingerprint] = event
            return self._retry(failing, now, why, event=event)
        done = None if event.forced else self._rolled_back.get(target.key)
        if done is not None:
            done.events[event.fingerprint] = event
            if now < shifted(done.at, self.settings.coalesce_window):
                return self._verdict(
                    Outcome.COALESCED, event, policy, target, "joined the rollback under way", done.incident
                )
            return self._verdict(
                Outcome.SUPPRESSED, event, policy, target, "target already rolled back; in cooldown", done.incident
            )
        held = self._held(counted=False)
        if held is not None:
            return self._verdict(Outcome.HELD, event, policy, target, held)
        # URL-safe (one path segment) and deterministic, so a rebuilt core names incidents as before.
        # The cluster leads when there is one: the same namespace/app in two clusters are two incidents.
        incident = self._incident_name(target, now)
        self._rolled_back[target.key] = Rollback(incident, now, policy, {event.fingerprint: event})
        self._recent.append((now, incident))
        return self._verdict(Outcome.ROLLBACK, event, policy, target, why, incident)

    def _incident_name(self, target: TargetRef, now: datetime) -> str:
        """``[cluster:]namespace:deployment:time``: one URL path segment, deterministic (a rebuilt core names
        incidents as before) and unique: a second rollback of the target at the same instant (a forced replay in
        the same batch, a rollback right after a restore) gets ``.2``, ``.3`` ..."""
        where = f"{target.cluster}:" if target.cluster else ""
        name = f"{where}{target.namespace}:{target.deployment}:{now.strftime('%Y%m%dT%H%M%S.%fZ')}"
        last = self._named.get(target.key)
        count = last[1] + 1 if last is not None and last[0] == now else 1
        self._named[target.key] = (now, count)
        return name if count == 1 else f"{name}.{count}"

    def _retry(self, failing: Failing, now: datetime, why: str, *, event: AlertEvent | None = None) -> Decision:
        event = event or failing.latest
        counted = any(name == failing.incident for _, name in self._recent)
        held = self._held(counted)
        if held is not None:
            failing.next_at = shifted(now, self._retry_delay(failing.attempts))
            return self._verdict(
                Outcome.HELD, event, failing.policy, failing.target, f"retry held: {held}", failing.incident
            )
        if not counted:
            self._recent.append((now, failing.incident))
        failing.attempts += 1
        failing.in_flight = True
        failing.next_at = shifted(now, self._retry_delay(failing.attempts))
        reason = f"retrying the failed rollback (retry {failing.attempts}): {why}"
        decision = self._verdict(Outcome.RETRY, event, failing.policy, failing.target, reason, failing.incident)
        return replace(decision, attempt=failing.attempts)

    def _retry_delay(self, attempts: int) -> timedelta:
        base, cap = self.settings.retry_interval, self.settings.max_retry_interval
        return min(cap, base * (1 << min(max(attempts - 1, 0), 30)))

    def _on_failed(
        self, incident: str, target: TargetRef, rolled: Rollback | None, failing: Failing | None, now: datetime
    ) -> None:
        key = target.key
        if failing is not None and failing.incident == incident:
            failing.next_at = shifted(now, self._retry_delay(failing.attempts))
            return
        if rolled is None:
            return  # an older incident of the target (a newer rollback took its place): nothing to retry
        del self._rolled_back[key]
        firing = {fp: e for fp, e in rolled.events.items() if not self._resolved_since(e)}
        if firing:
            self._failing[key] = Failing(
                incident, target, rolled.policy, firing, attempts=0, next_at=shifted(now, self.settings.retry_interval)
            )

    def _resolved_since(self, event: AlertEvent) -> bool:
        resolved_start = self._resolved.get(event.fingerprint)
        return isinstance(resolved_start, datetime) and event.starts_at <= resolved_start

    def _expire(self, now: datetime) -> None:
        self._seen.expire(now)
        self._resolved.expire(now)
        horizon = shifted(now, -self.settings.cap_window)
        while self._recent and self._recent[0][0] <= horizon:
            self._recent.pop(0)
        cooldown = self.settings.cooldown
        for key in [k for k, v in self._rolled_back.items() if now >= shifted(v.at, cooldown)]:
            del self._rolled_back[key]
        for key in [k for k, v in self._named.items() if v[0] < now]:
            del self._named[key]  # names only collide at one instant
