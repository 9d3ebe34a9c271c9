"""How audit entries read for people (``audit tail``, ``audit list``, the demo): one line per entry."""

from __future__ import annotations

from typing import Any

import orjson


def format_entry(entry: dict[str, Any]) -> str:
    data = entry["data"]
    detail = {
        "receipt": lambda: (
            f"notification {data.get('notification_id')} ({data.get('alerts')} alerts,"
            f" {data.get('status')}, from {data.get('external_url') or '?'})"
        ),
        "alert": lambda: f"{data.get('alertname')} {data.get('status')} fp={data.get('fingerprint')}",
        "decision": lambda: f"{data.get('alertname')}: {str(data.get('outcome')).upper()} - {data.get('reason')}",
        "rollback.intent": lambda: f"{data.get('incident')} plan={','.join(data.get('plan', []))}",
        "action": lambda: (
            f"{data.get('step')}: {data.get('result')} {data.get('before')} -> {data.get('after')}"
            f" ({data.get('duration_ms')} ms, {data.get('attempts')} attempts) {data.get('message')}"
        ),
        "rollback.result": lambda: (
            f"{data.get('incident')}: {data.get('status')}"
            + (" (retried while its alerts fire)" if data.get("retrying") else "")
        ),
        "action.intent": lambda: f"{data.get('step')}: about to set {data.get('planned')} (read {data.get('before')})",
        "rollback.retry": lambda: f"{data.get('incident')}: retry {data.get('attempt')} - {data.get('reason')}",
        "quarantine": lambda: f"events {data.get('event_ids')} could not be recorded: {data.get('error')}",
        "rejected.summary": lambda: f"{data.get('count')} requests without valid credentials rejected",
    }.get(entry["kind"], lambda: orjson.dumps(data).decode()[:160])()
    target = f" [{entry['target']}]" if entry.get("target") else ""
    return f"#{entry['seq']:<5} {entry['ts']} {entry['kind']:<16}{target} {detail}"
