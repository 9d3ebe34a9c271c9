"""The decision core: a deterministic state machine over alert events and timer ticks.

``DecisionCore.on_event(event, now)`` and ``on_tick(now)`` return decisions; they never perform I/O, never read a
clock and never raise on bad luck in the outside world. The engine owns time (it passes ``now``) and carries
the decisions out. Because the core is deterministic, the engine rebuilds its state after a restart by feeding
it the already-processed events again with the times they were first decided at.

Rules, in the order they are applied to an event:
1. identity ``(fingerprint, status, startsAt)`` seen before -> DUPLICATE (HA peers, retries, repeat_interval);
2. resolved -> RESOLVED, never an action; it cancels a pending persist-policy alert of the same fingerprint;
3. firing whose startsAt is not newer than a resolution already seen for that fingerprint -> STALE;
4. no policy matches (or an ``ignore`` policy) -> IGNORED; notify-only policy -> NOTIFY; no target (or a namespace
   outside the allowlist) -> REFUSED;
5. target already rolled back: inside the coalescing window -> COALESCED into that rollback, later inside the
   cooldown -> SUPPRESSED;
6. persist policy before its deadline -> PENDING (a tick at the deadline re-asks the core);
7. responder paused by an admin -> HELD; global cap of rollbacks per window reached -> HELD; otherwise ROLLBACK.
An admin replay with ``force`` skips rules 1, 3 and 5 (dedupe, staleness, cooldown), never the cap, the pause,
the target mapping or the executor's live safety checks.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from responder.core.model import AlertEvent, AlertStatus, Outcome, PolicyMode, TargetRef
from responder.core.rules import PolicyRule, Resolved, TargetRule, resolve_target, select_policy


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    outcome: Outcome
    event: AlertEvent
    reason: str
    policy: str = ""
    target: TargetRef | None = None
    incident: str | None = None  # the rollback this decision started or joined
    deadline: datetime | None = None  # PENDING only

    @property
    def acts(self) -> bool:
        return self.outcome is Outcome.ROLLBACK


@dataclass(slots=True)
class _Rollback:
    incident: str
    at: datetime


@dataclass(slots=True)
class _Pending:
    event: AlertEvent
    target: TargetRef
    policy: PolicyRule
    deadline: datetime


@dataclass(slots=True)
class _Expiring:
    """An insertion-ordered map whose entries expire ``ttl`` after their last refresh, bounded in size."""

    ttl: timedelta
    limit: int
    items: OrderedDict[object, tuple[datetime, object]] = field(default_factory=OrderedDict)

    def get(self, key: object) -> object | None:
        entry = self.items.get(key)
        return None if entry is None else entry[1]

    def put(self, key: object, value: object, now: datetime) -> None:
        self.items[key] = (now + self.ttl, value)
        self.items.move_to_end(key)
        while len(self.items) > self.limit:
            self.items.popitem(last=False)

    def expire(self, now: datetime) -> None:
        while self.items:
            key, (expiry, _) = next(iter(self.items.items()))
            if expiry > now:
                return
            del self.items[key]


class DecisionCore:
    """All decision state for one responder; see the module docstring for the rules."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self._seen = _Expiring(settings.dedupe_ttl, settings.dedupe_max)
        self._resolved = _Expiring(settings.dedupe_ttl, settings.dedupe_max)  # fingerprint -> startsAt
        self._rolled_back: dict[str, _Rollback] = {}
        self._recent: deque[datetime] = deque()
        self._pending: dict[str, _Pending] = {}
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
        """Re-ask pending persist-policy alerts whose deadline has come."""
        self._expire(now)
        due = sorted((p for p in self._pending.values() if p.deadline <= now), key=lambda p: p.deadline)
        decisions: list[Decision] = []
        for pending in due:
            del self._pending[pending.event.fingerprint]
            reason = f"still firing after {pending.policy.persist_for}"
            decisions.append(self._act(pending.event, pending.target, pending.policy, now, reason))
        return decisions

    def mark_live(self, target: TargetRef) -> None:
        """A new canary is live on the target (e.g. restored): it may be rolled back again."""
        self._rolled_back.pop(target.key, None)

    # -- queries --

    def next_deadline(self) -> datetime | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def sizes(self) -> dict[str, int]:
        """How much state the core holds (bounded by dedupe_ttl and dedupe_max; see bench/bench_storm.py)."""
        return {
            "seen": len(self._seen.items),
            "resolved": len(self._resolved.items),
            "pending": len(self._pending),
            "rolled_back": len(self._rolled_back),
        }

    def rolled_back(self, target: TargetRef) -> str | None:
        state = self._rolled_back.get(target.key)
        return state.incident if state else None

    # -- rules --

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
        if policy.mode is PolicyMode.PERSIST:
            deadline = event.starts_at + policy.persist_for
            if deadline > now and (event.forced or self._rolled_back.get(resolved.target.key) is None):
                return [self._hold_until(event, resolved.target, policy, deadline)]
        return [self._act(event, resolved.target, policy, now, f"policy {policy.name!r}")]

    def _hold_until(self, event: AlertEvent, target: TargetRef, policy: PolicyRule, deadline: datetime) -> Decision:
        self._pending[event.fingerprint] = _Pending(event, target, policy, deadline)
        return Decision(
            outcome=Outcome.PENDING,
            event=event,
            target=target,
            policy=policy.name,
            deadline=deadline,
            reason=f"must persist for {policy.persist_for} before a rollback",
        )

    def _act(self, event: AlertEvent, target: TargetRef, policy: PolicyRule, now: datetime, why: str) -> Decision:
        def verdict(outcome: Outcome, reason: str, incident: str | None = None) -> Decision:
            return Decision(
                outcome=outcome, event=event, target=target, policy=policy.name, reason=reason, incident=incident
            )

        done = None if event.forced else self._rolled_back.get(target.key)
        if done is not None and now < done.at + self.settings.coalesce_window:
            return verdict(Outcome.COALESCED, "joined the rollback under way", done.incident)
        if done is not None:
            return verdict(Outcome.SUPPRESSED, "target already rolled back; in cooldown", done.incident)
        if self.paused is not None:
            return verdict(Outcome.HELD, f"responder paused ({self.paused}); nothing is executed")
        if len(self._recent) >= self.settings.cap_max:
            cap = f"{self.settings.cap_max} rollbacks per {self.settings.cap_window}"
            return verdict(Outcome.HELD, f"global cap of {cap} reached; a human must decide")
        # URL-safe (one path segment) and deterministic, so a rebuilt core names incidents as before.
        # The cluster leads when there is one: the same namespace/app in two clusters are two incidents.
        where = f"{target.cluster}:" if target.cluster else ""
        incident = f"{where}{target.namespace}:{target.deployment}:{now.strftime('%Y%m%dT%H%M%S.%fZ')}"
        self._rolled_back[target.key] = _Rollback(incident, now)
        self._recent.append(now)
        return verdict(Outcome.ROLLBACK, why, incident)

    def _expire(self, now: datetime) -> None:
        self._seen.expire(now)
        self._resolved.expire(now)
        while self._recent and self._recent[0] <= now - self.settings.cap_window:
            self._recent.popleft()
        for key in [k for k, v in self._rolled_back.items() if now >= v.at + self.settings.cooldown]:
            del self._rolled_back[key]
