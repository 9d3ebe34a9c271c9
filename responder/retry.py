"""Retrying, in one place: capped exponential backoff with jitter, and which HTTP answers are worth retrying.

Used by the rollback executor's Kubernetes steps, the notification outbox (Slack, Teams), the GitOps relay, the
engine's records while the database is unavailable, and task supervision. Pure: the caller sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass

# 408 Request Timeout, 425 Too Early, 429 Too Many Requests, and every 5xx: the same request may work later.
_RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """``attempts`` tries in all (the first included); after failed try ``n`` wait ``base_delay_s * 2**(n-1)``,
    capped at ``max_delay_s``, minus up to ``jitter`` of it at random (spreads out retries), and never less than
    a server's Retry-After."""

    attempts: int = 6
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, *, random: float = 0.0, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based); ``random`` is in [0, 1)."""
        capped = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(max(attempt - 1, 0), 62))
        wait = capped * (1.0 - self.jitter * random)
        return max(wait, retry_after) if retry_after is not None else wait

    def exhausted(self, attempt: int) -> bool:
        """Whether try number ``attempt`` was the last one allowed."""
        return attempt >= self.attempts


def http_retryable(status: int) -> bool:
    """Whether an HTTP answer with this status may succeed when sent again (5xx, 408, 425, 429)."""
    return status >= 500 or status in _RETRYABLE_STATUS


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header's delay in seconds (the delta-seconds form; a date or garbage gives None)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
