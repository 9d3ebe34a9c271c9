"""Slack through slack-sdk's async clients: an incoming webhook, or a bot token with ``chat.postMessage``.

The only module that imports slack_sdk. Every failure leaves as :class:`SlackError` with a closed
:class:`SlackFailure` reason (a metric label and audit field) plus the HTTP status and a 429's ``Retry-After``;
no slack-sdk or aiohttp exception, and never the webhook URL or the token (a webhook URL is a credential, and
library messages may quote it), crosses this boundary.

slack-sdk's own retry handlers are switched off: the outbox owns retries (with backoff, persisted across
restarts). The clients share one aiohttp session of ours, whose total timeout bounds a hanging Slack.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from responder.notify.base import DeliveryFailed

# slack-sdk logs request URLs (for a webhook: the secret) at DEBUG; this logger never goes below WARNING.
_sdk_log = logging.getLogger("responder.slack.sdk")
_sdk_log.setLevel(logging.WARNING)


class SlackFailure(enum.StrEnum):
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"
    CHANNEL = "channel"
    INVALID = "invalid"

    @property
    def retryable(self) -> bool:
        return self in (
            SlackFailure.RATE_LIMITED,
            SlackFailure.SERVER_ERROR,
            SlackFailure.TIMEOUT,
            SlackFailure.CONNECTION,
        )


class SlackError(DeliveryFailed):
    """A failed delivery; ``reason`` is the closed SlackFailure (a str: the metric label and audit field)."""

    reason: SlackFailure

    def __init__(
        self, reason: SlackFailure, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, message, retryable=reason.retryable, status=status, retry_after=retry_after)


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a message landed; ``ts`` is None for an incoming webhook (it cannot be threaded on)."""

    channel: str | None
    ts: str | None


_AUTH_ERRORS = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "missing_scope"}
_CHANNEL_ERRORS = {"channel_not_found", "not_in_channel", "is_archived", "channel_is_archived", "no_service"}
_SERVER_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}


def classify(status: int | None, error: str) -> SlackFailure:
    """The failure reason for an HTTP status and Slack's error code (``ok: false`` body or webhook text)."""
    if status == 429 or error == "ratelimited":
        return SlackFailure.RATE_LIMITED
    if error in _AUTH_ERRORS or status in (401, 403):
        return SlackFailure.AUTH
    if error in _CHANNEL_ERRORS or status in (404, 410):
        return SlackFailure.CHANNEL
    if status is not None and status >= 500 or error in _SERVER_ERRORS:
        return SlackFailure.SERVER_ERROR
    return SlackFailure.INVALID


def retry_after(headers: Any) -> float | None:
    try:
        value = float(headers.get("Retry-After", ""))
    except (TypeError, ValueError, AttributeError):
        return None
    return value if value >= 0 else None


class SlackSender:
    """Posts messages; create, :meth:`open` inside the event loop, :meth:`close` when done."""

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        bot_token: str | None = None,
        channel: str | None = None,
        api_base_url: str = "https://slack.com/api/",
        timeout_s: float = 10.0,
    ) -> None:
        if bot_token is None and webhook_url is None:
            raise ValueError("a Slack sender needs a webhook URL or a bot token")
        self._webhook_url, self._token, self.channel = webhook_url, bot_token, channel
        self._base_url, self._timeout_s = api_base_url, timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._web: AsyncWebClient | None = None
        self._hook: AsyncWebhookClient | None = None

    def __repr__(self) -> str:
        return f"SlackSender(mode={'bot' if self.threads else 'webhook'}, channel={self.channel!r})"

    @property
    def threads(self) -> bool:
        """Bot-token mode posts follow-ups as thread replies; a webhook cannot."""
        return self._token is not None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        timeout = max(1, int(self._timeout_s))
        if self._token is not None:
            self._web = AsyncWebClient(
                token=self._token,
                base_url=self._base_url,
                session=self._session,
                timeout=timeout,
                logger=_sdk_log,
                retry_handlers=[],
            )
        else:
            assert self._webhook_url is not None
            self._hook = AsyncWebhookClient(
                self._webhook_url, session=self._session, timeout=timeout, logger=_sdk_log, retry_handlers=[]
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, *, text: str, blocks: list[dict[str, Any]], thread_ts: str | None = None) -> Posted:
        """Send one message (a thread reply when ``thread_ts`` is given in bot mode); raise SlackError."""
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._web is not None:
                    return await self._post_api(text, blocks, thread_ts)
                return await self._post_webhook(text, blocks)
        except SlackError:
            raise
        except TimeoutError:
            raise SlackError(SlackFailure.TIMEOUT, f"Slack did not answer within {self._timeout_s:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SlackError(SlackFailure.CONNECTION, f"cannot reach Slack ({type(exc).__name__})") from None
        except SlackClientError as exc:
            raise SlackError(SlackFailure.INVALID, f"Slack client error ({type(exc).__name__})") from None

    async def _post_api(self, text: str, blocks: list[dict[str, Any]], thread_ts: str | None) -> Posted:
        assert self._web is not None and self.channel is not None
        try:
            response = await self._web.chat_postMessage(
                channel=self.channel, text=text, blocks=blocks, thread_ts=thread_ts, unfurl_links=False
            )
        except SlackApiError as exc:
            status = getattr(exc.response, "status_code", None)
            data = getattr(exc.response, "data", None)
            error = str(data.get("error", "")) if isinstance(data, dict) else ""
            reason = classify(status, error)
            wait = retry_after(getattr(exc.response, "headers", None))
            raise SlackError(
                reason, f"chat.postMessage failed: {error or status}", status=status, retry_after=wait
            ) from None
        return Posted(channel=str(response.get("channel") or self.channel), ts=_str_or_none(response.get("ts")))

    async def _post_webhook(self, text: str, blocks: list[dict[str, Any]]) -> Posted:
        assert self._hook is not None
        response = await self._hook.send(text=text, blocks=blocks, unfurl_links=False)
        if response.status_code == 200:
            return Posted(channel=self.channel, ts=None)
        error = (response.body or "").strip()[:80]
        reason = classify(response.status_code, error)
        raise SlackError(
            reason,
            f"incoming webhook answered {response.status_code}: {error}",
            status=response.status_code,
            retry_after=retry_after(response.headers),
        )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
