"""Canary vs stable numbers from the Prometheus HTTP API, for messages and incident reports.

Reads the recording rules of ``alert-rules/canary-rules.yaml`` (per namespace, app and track) with an instant
query at the decision time. Best effort by design: no URL, an error, a timeout or missing series give a
snapshot marked unavailable, never an exception, because a notification must not wait on monitoring and a
rollback never waits on a notification.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Any

import aiohttp

from responder.notify.incident import MetricsSnapshot, TrackMetrics

ERROR_RATIO = "namespace_app_track:http_requests_5xx:ratio_rate1m"
P95 = "namespace_app_track:http_request_duration_seconds:p95_rate1m"
REQUEST_RATE = "namespace_app_track:http_requests:rate1m"
MEMORY = "namespace_app_track:container_memory_working_set_bytes:sum"


def _selector(metric: str, namespace: str, app: str) -> str:
    def q(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"')

    return f'{metric}{{namespace="{q(namespace)}",app="{q(app)}"}}'


def _by_track(body: Any) -> dict[str, float | None]:
    """{track: value} from an instant-vector answer; NaN (a track without requests) becomes None."""
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ValueError("query failed")
    found: dict[str, float | None] = {}
    for sample in body.get("data", {}).get("result", []):
        track = sample.get("metric", {}).get("track")
        value = float(sample.get("value", [0, "NaN"])[1])
        found[str(track)] = None if math.isnan(value) or math.isinf(value) else value
    return found


class PrometheusMetrics:
    """Instant queries against one Prometheus; :meth:`open` / :meth:`close` own the HTTP session."""

    def __init__(self, base_url: str | None, *, timeout_s: float = 3.0) -> None:
        self._base = base_url.rstrip("/") if base_url else None
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._base is not None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def snapshot(self, *, namespace: str, app: str, at: datetime) -> MetricsSnapshot:
        stamp = at.isoformat().replace("+00:00", "Z")
        if self._session is None or self._base is None:
            return MetricsSnapshot(at=stamp, unavailable="no Prometheus URL configured")
        try:
            async with asyncio.timeout(self._timeout_s):
                errors, p95, rate, memory = await asyncio.gather(
                    *(self._query(_selector(m, namespace, app), at) for m in (ERROR_RATIO, P95, REQUEST_RATE, MEMORY))
                )
        except TimeoutError:
            return MetricsSnapshot(at=stamp, unavailable="Prometheus timed out")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return MetricsSnapshot(at=stamp, unavailable=f"Prometheus query failed ({type(exc).__name__})")
        if not (errors or p95 or rate or memory):
            return MetricsSnapshot(at=stamp, unavailable="no canary series in Prometheus")

        def track(name: str) -> TrackMetrics:
            return TrackMetrics(
                error_rate=errors.get(name),
                p95_s=p95.get(name),
                request_rate=rate.get(name),
                memory_bytes=memory.get(name),
            )

        return MetricsSnapshot(at=stamp, canary=track("canary"), stable=track("stable"))

    async def _query(self, query: str, at: datetime) -> dict[str, float | None]:
        assert self._session is not None
        params = {"query": query, "time": f"{at.timestamp():.3f}"}
        async with self._session.get(f"{self._base}/api/v1/query", params=params) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            return _by_track(await response.json(content_type=None))
