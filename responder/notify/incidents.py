"""Assembles :class:`responder.notify.incident.Incident` values from the store (for messages and reports).

An incident is a rollback (its record: target, steps, cited alerts) or the first notice of something else people
were told (held, refused, notify-only, an alert that could not be processed). Metrics at decision time come from
what the first message showed, else from Prometheus at the incident's time (best effort).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from responder.core.model import iso, parse_iso
from responder.notify.incident import Incident, MetricsSnapshot
from responder.notify.prometheus import PrometheusMetrics
from responder.store import OutboxRow, Reader, RollbackRecord, Store

PRIMARY_KINDS = frozenset({"rollback", "held", "refused", "notify", "paused_hold", "error"})


class IncidentReader:
    def __init__(self, store: Store, prometheus: PrometheusMetrics | None = None) -> None:
        self.store = store
        self.prometheus = prometheus

    async def load(self, incident_id: str, *, live_metrics: bool = False) -> Incident | None:
        records = await self.store.rollbacks(incident=incident_id)
        record = records[0] if records else None
        rows, metrics = await self.store.read(lambda r: (r.outbox_rows(incident_id), _metrics_shown(r, incident_id)))
        first = next((r for r in rows if r.role == "incident"), None)
        if record is not None:
            incident = await self._from_rollback(record)
        elif first is not None and first.kind in PRIMARY_KINDS:
            incident = await self._from_notice(first, [r for r in rows if r.kind == first.kind])
        else:
            return None
        if metrics:
            incident = replace(incident, metrics=MetricsSnapshot.from_dict(metrics))
        elif live_metrics:
            incident = replace(incident, metrics=await self.metrics_for(incident))
        return incident

    async def followups(self, incident_id: str) -> list[dict[str, Any]]:
        """Later events of an incident, once each (rows exist per destination: those of the first destination)."""
        rows = await self.store.read(lambda r: r.outbox_rows(incident_id))
        destination = next((r.destination for r in rows if r.role == "incident"), None)
        return [
            {**r.data, "kind": r.kind, "at": iso(datetime.fromtimestamp(r.created_at, UTC)), "delivery": r.state}
            for r in rows
            if r.role == "followup" and r.destination == destination
        ]

    async def recent(self, *, limit: int = 100) -> list[Incident]:
        records = await self.store.rollbacks()
        others = await self.store.read(lambda r: r.notice_incidents(limit))
        found = [await self._from_rollback(r, with_events=False) for r in records[-limit:]]
        for incident_id in others:
            loaded = await self.load(incident_id)
            if loaded is not None:
                found.append(loaded)
        return sorted(found, key=lambda i: i.created_at, reverse=True)[:limit]

    async def metrics_for(self, incident: Incident) -> MetricsSnapshot:
        if self.prometheus is None or not incident.namespace:
            return MetricsSnapshot(at=incident.created_at, unavailable="no Prometheus URL configured")
        labels = incident.alerts[0].get("labels", {}) if incident.alerts else {}
        app = str(labels.get("app") or (incident.deployment or "").removesuffix("-canary"))
        return await self.prometheus.snapshot(namespace=incident.namespace, app=app, at=parse_iso(incident.created_at))

    async def _events(self, ids: list[int]) -> list[dict[str, Any]]:
        ids = [i for i in ids if i]
        if not ids:
            return []
        return await self.store.read(lambda r: r.event_facts(ids))

    async def _from_rollback(self, record: RollbackRecord, *, with_events: bool = True) -> Incident:
        cites = [c for c in record.cites if isinstance(c, dict)]
        events = await self._events([int(c.get("event_id") or 0) for c in cites]) if with_events else []
        reason = "; ".join(f"{c.get('alertname')}: {c.get('summary') or c.get('description') or ''}" for c in cites)
        return Incident(
            id=record.incident,
            kind="rollback",
            status=record.status,
            created_at=record.created_at,
            target=record.key,
            namespace=record.target.namespace,
            deployment=record.target.deployment,
            cluster=record.target.cluster or None,
            reason=reason,
            dry_run=record.dry_run,
            steps=record.steps,
            alerts=events or cites,
            retrying=record.retrying,
        )

    async def _from_notice(self, row: OutboxRow, joined: list[OutboxRow]) -> Incident:
        # "namespace/deployment", or "cluster/namespace/deployment" with several clusters
        *_, cluster, namespace, deployment = ["", "", "", *(row.target or "").split("/")]
        return Incident(
            id=row.incident,
            kind=row.kind,
            status=row.kind,
            created_at=iso(datetime.fromtimestamp(row.created_at, UTC)),
            target=row.target,
            namespace=namespace or None,
            deployment=deployment or None,
            cluster=cluster or None,
            reason=str(row.data.get("reason") or ""),
            # the first notice's alert and those of the same kind joined to it (several HELD alerts, one target)
            alerts=await self._events(list(dict.fromkeys(int(r.data.get("event_id") or 0) for r in [row, *joined]))),
        )


def _metrics_shown(reader: Reader, incident_id: str) -> dict[str, Any] | None:
    """The metrics the incident's first message showed, at whichever destination it was delivered first."""
    rows = reader.outbox_rows(incident_id)
    for destination in dict.fromkeys(r.destination for r in rows if r.role == "incident"):
        metrics = reader.thread(incident_id, destination).metrics
        if metrics:
            return metrics
    return None
