"""Canary vs stable numbers at one instant (from Prometheus, :mod:`responder.notify.prometheus`) and how every
message and report writes them. Pure: plain values and formatting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackMetrics:
    """One track's numbers at decision time; ``None`` where Prometheus had no value (NaN, no series)."""

    error_rate: float | None = None  # 5xx ratio, 0..1
    p95_s: float | None = None
    request_rate: float | None = None  # requests per second
    memory_bytes: float | None = None  # working set of all the track's containers


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSnapshot:
    """Canary vs stable at one instant, or why there are no numbers (``unavailable``)."""

    at: str
    canary: TrackMetrics = field(default_factory=TrackMetrics)
    stable: TrackMetrics = field(default_factory=TrackMetrics)
    unavailable: str | None = None

    def as_dict(self) -> dict[str, Any]:
        def track(t: TrackMetrics) -> dict[str, float | None]:
            return {
                "error_rate": t.error_rate,
                "p95_seconds": t.p95_s,
                "request_rate": t.request_rate,
                "memory_bytes": t.memory_bytes,
            }

        if self.unavailable:
            return {"at": self.at, "unavailable": self.unavailable}
        return {"at": self.at, "canary": track(self.canary), "stable": track(self.stable)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricsSnapshot:
        def track(t: Mapping[str, Any]) -> TrackMetrics:
            return TrackMetrics(
                error_rate=t.get("error_rate"),
                p95_s=t.get("p95_seconds"),
                request_rate=t.get("request_rate"),
                memory_bytes=t.get("memory_bytes"),  # absent in snapshots stored before memory was queried
            )

        if data.get("unavailable"):
            return cls(at=str(data.get("at", "")), unavailable=str(data["unavailable"]))
        return cls(at=str(data["at"]), canary=track(data.get("canary", {})), stable=track(data.get("stable", {})))


def fmt_rate(value: float | None) -> str:
    return UNAVAILABLE if value is None else f"{value * 100:.2f}%"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return UNAVAILABLE
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def fmt_rps(value: float | None) -> str:
    return UNAVAILABLE if value is None else f"{value:.2f} req/s"


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return UNAVAILABLE
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def metric_rows(metrics: MetricsSnapshot) -> list[tuple[str, str, str]]:
    c, s = metrics.canary, metrics.stable
    return [
        ("5xx error rate", fmt_rate(c.error_rate), fmt_rate(s.error_rate)),
        ("P95 latency", fmt_seconds(c.p95_s), fmt_seconds(s.p95_s)),
        ("request rate", fmt_rps(c.request_rate), fmt_rps(s.request_rate)),
        ("memory (working set)", fmt_bytes(c.memory_bytes), fmt_bytes(s.memory_bytes)),
    ]
