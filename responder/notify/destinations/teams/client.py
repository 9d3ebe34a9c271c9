"""Delivery to a Microsoft Teams webhook over aiohttp: one POST of the laid-out message per card.

The URL is a Workflows trigger ("When a Teams webhook request is received", the "Send webhook alerts to a channel"
template), which answers 202 Accepted once the flow run is queued (the run posts the card afterwards, so 202 is as far
as delivery can be seen from here), or a legacy incoming webhook, which answers 200. Any 2xx is delivered.

The URL is the credential (a Workflows URL carries the flow's signature in its query), so it is never part of an
error text: the messages are our own words, the few characters quoted from a response are redacted, and aiohttp's
exceptions (which may quote the URL) are never chained. Every failure leaves as :class:`TeamsError` with a closed
:class:`TeamsFailure` reason, the HTTP status and a ``Retry-After``. One session of ours, with a total timeout,
bounds a hanging Teams; the outbox owns retries.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import aiohttp

from responder.notify.base import DeliveryFailed
from responder.notify.destinations.teams.cards import encode
from responder.retry import http_retryable, retry_after_seconds

_REDACTED = "<webhook>"
_MIN_SECRET_PART = 8  # shorter pieces of the URL ("/", "api-version=1") identify nothing


class TeamsFailure(enum.StrEnum):
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"
    INVALID = "invalid"

    @property
    def retryable(self) -> bool:
        return self in (
            TeamsFailure.RATE_LIMITED,
            TeamsFailure.SERVER_ERROR,
            TeamsFailure.TIMEOUT,
            TeamsFailure.CONNECTION,
        )


class TeamsError(DeliveryFailed):
    """A failed delivery; ``reason`` is the closed TeamsFailure (a str: the metric label and audit field)."""

    reason: TeamsFailure

    def __init__(
        self, reason: TeamsFailure, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, message, retryable=reason.retryable, status=status, retry_after=retry_after)


def classify(status: int) -> TeamsFailure | None:
    """The failure an HTTP answer means (None: delivered). 429 is rate limiting, 408 a timeout, and the other
    answers worth repeating (5xx, 425) server errors; 401/403, and 404/410 (the URL names no live workflow), need a
    new URL; any other 4xx is a request Teams will never take."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return TeamsFailure.RATE_LIMITED
    if status == 408:
        return TeamsFailure.TIMEOUT
    if http_retryable(status):
        return TeamsFailure.SERVER_ERROR
    if status in (401, 403, 404, 410):
        return TeamsFailure.AUTH
    return TeamsFailure.INVALID


def redactor(url: str) -> Callable[[str], str]:
    """A function that replaces the URL, and each long enough piece of it (path, query, query values), by a mark."""
    parts = urlsplit(url)
    pieces = {url, url.split("?", 1)[0], parts.path, parts.query, *(v for _, v in parse_qsl(parts.query))}
    pieces |= {unquote(piece) for piece in pieces}  # as a server may quote it back, decoded
    secret = sorted((p for p in pieces if len(p) >= _MIN_SECRET_PART), key=len, reverse=True)

    def redact(text: str) -> str:
        for piece in secret:
            text = text.replace(piece, _REDACTED)
        return text

    return redact


class TeamsSender:
    """Posts cards to one webhook URL; create, :meth:`open` inside the event loop, :meth:`close` when done."""

    def __init__(self, *, webhook_url: str, timeout_s: float = 10.0) -> None:
        self._url, self._timeout_s = webhook_url, timeout_s
        self._redact = redactor(webhook_url)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"TeamsSender(webhook=<redacted>, timeout_s={self._timeout_s:g})"

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, payload: Mapping[str, Any]) -> int:
        """Send one message; return the (2xx) status, or raise TeamsError."""
        assert self._session is not None, "open() first"
        try:
            async with self._session.post(
                self._url, data=encode(payload), headers={"Content-Type": "application/json"}
            ) as response:
                failure = classify(response.status)
                if failure is None:
                    return response.status
                excerpt = (await response.content.read(200)).decode("utf-8", "replace")
                raise TeamsError(
                    failure,
                    f"Teams answered {response.status}: {self._quote(excerpt)}",
                    status=response.status,
                    retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                )
        except TeamsError:
            raise
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too: before ClientError
            raise TeamsError(TeamsFailure.TIMEOUT, f"Teams did not answer within {self._timeout_s:g}s") from None
        except aiohttp.InvalidURL:
            raise TeamsError(TeamsFailure.INVALID, "the Teams webhook URL is not a valid URL") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TeamsError(TeamsFailure.CONNECTION, f"cannot reach Teams ({type(exc).__name__})") from None

    def _quote(self, text: str) -> str:
        return self._redact(" ".join(text.split()))[:120] or "(no body)"
