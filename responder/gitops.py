"""GitOps awareness: after a rollback, say what was rejected, durably, without ever slowing the rollback down.

Two parts, both optional (``gitops`` in the configuration):

- the ANNOTATE step of the executor (:mod:`responder.engine.executor`) writes the rejected images, the Deployment's
  revision and the incident onto the canary Deployment, where a GitOps pipeline or an admission policy can see
  them; the engine turns it on with ``gitops.annotate``;
- :class:`GitopsRelay` records a ``gitops.rejected`` audit entry for every completed rollback and, with
  ``gitops.webhook``, delivers one signed webhook per incident so a pipeline can suspend syncing or open a revert.

Recording: :meth:`GitopsRelay.hook` runs as one of the engine's notice hooks, inside the transaction that records
the rollback's result (on the store's thread): it only inserts one row per incident (a second is ignored) and pokes
the worker, so the webhook is durable exactly when the rollback's result is, and nothing waits on it.

Delivering: one worker task posts due rows in id order, signed the Standard Webhooks way: headers
``webhook-id`` (stable across retries: receivers deduplicate on it), ``webhook-timestamp`` (the attempt's Unix
time) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, the key being the
base64-decoded secret after its ``whsec_`` prefix. 2xx marks the row delivered; 408, 429, 5xx, timeouts and
connection errors are retried with capped exponential backoff (a longer Retry-After wins); other answers, or too
many attempts, mark it failed. Every attempt is audited (never with the secret). The body is fixed when the row
is written, so every attempt sends the same bytes. As with the Slack outbox, the one duplicate possible is a
crash after the receiver's 2xx and before the row is marked: it is sent again, with the same ``webhook-id``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from responder.config import ConfigError, GitopsSettings, Secrets
from responder.core.model import iso
from responder.ports import Notice
from responder.relay import DueWorker
from responder.retry import Backoff, http_retryable, retry_after_seconds
from responder.store import GitopsRow, RollbackRecord, Store, Tx, canonical

log = logging.getLogger("responder.gitops")

EVENT_TYPE = "canary.rolled_back"


# -- Standard Webhooks signing (pure) ---------------------------------------------------------------------


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after an optional ``whsec_`` prefix."""
    encoded = secret.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the webhook secret must be base64 (optionally prefixed with 'whsec_')") from exc
    if len(key) < 16:
        raise ValueError("the webhook secret is too short: use at least 16 random bytes (24 base64 characters)")
    return key


def signature(key: bytes, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">``."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(key: bytes, *, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "canary-responder",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id=msg_id, timestamp=timestamp, body=body),
    }


# -- what a completed rollback rejected (pure) ------------------------------------------------------------


def rejection(record: RollbackRecord, *, at: str) -> dict[str, Any]:
    """The facts of a rejected canary, from its rollback record."""
    check = (record.steps.get("check") or {}).get("before") or {}
    annotate = record.steps.get("annotate") or {}
    return {
        "incident": record.incident,
        "target": record.key,
        "cluster": record.target.cluster or None,
        "namespace": record.target.namespace,
        "deployment": record.target.deployment,
        "images": list(check.get("images") or []),
        "revision": check.get("revision"),
        "rejected_at": at,
        "annotated": annotate.get("result") in ("done", "noop"),
        "alerts": sorted({str(c.get("alertname")) for c in record.cites if isinstance(c, dict) and c.get("alertname")}),
    }


# -- the relay --------------------------------------------------------------------------------------------


class _Retry(Exception):
    def __init__(self, reason: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after, self.status = reason, retry_after, status


class _GiveUp(Exception):
    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class GitopsRelay(DueWorker):
    """Create in the application's startup; :meth:`hook` joins the engine's notice hook; :meth:`start` before
    the engine starts (it creates its table), :meth:`stop` after it stops."""

    name = "gitops-webhook"

    def __init__(
        self,
        *,
        store: Store,
        settings: GitopsSettings,
        key: bytes | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        self.store, self.settings, self.key = store, settings, key
        hook = settings.webhook
        self.backoff = Backoff(
            attempts=hook.max_attempts if hook else 20,
            base_delay_s=hook.base_delay.total_seconds() if hook else 1.0,
            max_delay_s=hook.max_delay.total_seconds() if hook else 300.0,
            jitter=0.0,
        )
        self._session: aiohttp.ClientSession | None = None

    # -- recording: on the store's thread, inside the transaction that records the rollback's result --

    def hook(self, tx: Tx, notice: Notice) -> None:
        if notice.kind != "rollback" or notice.data.get("status") not in ("done", "partial") or not notice.incident:
            return
        record = tx.rollback(notice.incident)
        if record is None:
            return
        at = notice.data.get("rejected_at") or iso(datetime.fromtimestamp(self.clock(), UTC))
        facts = rejection(record, at=str(at))  # the same time as the Deployment's rejected-at annotation
        queued = self.settings.webhook is not None and self._enqueue(tx, facts)
        tx.append_audit("gitops.rejected", {**facts, "webhook": queued}, target=notice.target)
        if queued:
            self.wake_threadsafe()

    def _enqueue(self, tx: Tx, facts: dict[str, Any]) -> bool:
        body = canonical({"type": EVENT_TYPE, "timestamp": facts["rejected_at"], "data": facts})
        return tx.insert_gitops(
            incident=facts["incident"], msg_id=f"msg_{uuid.uuid4().hex}", body=body, now=self.clock()
        )

    # -- lifecycle --

    async def start(self, *, worker: bool = True) -> None:
        """Open the session; ``worker``: start delivering now (several replicas: only while leading)."""
        self.bind_loop()
        hook = self.settings.webhook
        if hook is not None:
            timeout = aiohttp.ClientTimeout(total=hook.timeout.total_seconds())
            self._session = aiohttp.ClientSession(timeout=timeout)
            self.wanted = True
            if worker:
                self.start_worker()

    async def stop(self, grace_s: float = 0.0) -> None:
        await self.stop_worker(grace_s)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- delivering --

    async def next_due(self) -> float | None:
        return await self.store.read(lambda r: r.next_gitops_due())

    async def deliver_due(self) -> int:
        now = self.clock()
        rows = await self.store.read(lambda r: r.due_gitops(now))
        tried = 0
        for row in rows:
            if self.stopping:  # shutting down: the rest stay pending for the next process
                break
            await self._deliver(row)
            tried += 1
        return tried

    async def _deliver(self, row: GitopsRow) -> None:
        try:
            status = await self._post(row)
        except _Retry as exc:
            await self._failed(row, exc.reason, retryable=True, retry_after=exc.retry_after, status=exc.status)
            return
        except _GiveUp as exc:
            await self._failed(row, exc.reason, retryable=False, retry_after=None, status=exc.status)
            return
        await self._finish(row, state="delivered", result="delivered", status=status)

    async def _post(self, row: GitopsRow) -> int:
        hook, session = self.settings.webhook, self._session
        assert hook is not None and session is not None and self.key is not None
        headers = signed_headers(self.key, msg_id=row.msg_id, timestamp=int(self.clock()), body=row.body)
        try:
            async with session.post(hook.url, data=row.body, headers=headers) as response:
                await response.read()
                status = response.status
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        except TimeoutError as exc:
            raise _Retry("timeout") from exc
        except aiohttp.ClientError as exc:
            raise _Retry(f"connection: {type(exc).__name__}") from exc
        if 200 <= status < 300:
            return status
        if http_retryable(status):
            raise _Retry(f"HTTP {status}", retry_after=retry_after, status=status)
        raise _GiveUp(f"HTTP {status}", status=status)

    async def _failed(
        self, row: GitopsRow, reason: str, *, retryable: bool, retry_after: float | None, status: int | None
    ) -> None:
        attempts = row.attempts + 1
        give_up = not retryable or self.backoff.exhausted(attempts)
        retry_at = None if give_up else self.clock() + self.backoff.delay(attempts, retry_after=retry_after)
        log.warning("gitops webhook for %s: %s (%s)", row.incident, reason, "failed" if give_up else "retry")
        await self._finish(
            row,
            state="failed" if give_up else "pending",
            result="failed" if give_up else "retry",
            status=status,
            error=reason,
            retry_at=retry_at,
        )

    async def _finish(
        self,
        row: GitopsRow,
        *,
        state: str,
        result: str,
        status: int | None,
        error: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        now = self.clock()
        data: dict[str, Any] = {"incident": row.incident, "webhook_id": row.msg_id, "attempt": row.attempts + 1}
        data.update({k: v for k, v in {"result": result, "status": status, "error": error}.items() if v is not None})
        if retry_at is not None:
            data["retry_in_s"] = round(retry_at - now, 3)

        def record(tx: Tx) -> None:
            tx.finish_gitops(row.id, state=state, now=now, retry_at=retry_at, error=error)
            tx.append_audit("gitops.webhook", data)

        await self.store.write(record, term=self.term())


def build_relay(settings: GitopsSettings, secrets: Secrets, *, store: Store) -> GitopsRelay | None:
    """The relay for these settings, or None when GitOps awareness is off."""
    if not settings.enabled:
        return None
    secret = secrets.gitops_webhook_secret
    try:
        key = signing_key(secret.get_secret_value()) if secret is not None else None
    except ValueError as exc:
        raise ConfigError(f"gitops.webhook.secret: {exc}") from None
    return GitopsRelay(store=store, settings=settings, key=key)
