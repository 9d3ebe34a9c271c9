"""The inbox signal of the shared store: a dedicated connection LISTENs on ``canary_responder_inbox``, where every
replica's ingest transaction NOTIFYs its notification id (delivered on commit, so a signal always names rows that
are there), and each one is handed to a callback. This side is asyncio (psycopg's AsyncConnection on the event
loop): it only waits, so it needs no thread of its own, and a signal reaches the engine without a hop.

The connection is re-established with backoff for ever. Signals sent while it was down are lost, so every
(re)connection also signals 0: "look at everything undecided" (the leader also looks periodically).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import psycopg

from responder.retry import Backoff
from responder.store.postgres.connect import PostgresConfig, conninfo, redactor
from responder.store.postgres.dialect import INBOX_CHANNEL

log = logging.getLogger("responder.store.postgres")

_BACKOFF = Backoff(attempts=1 << 30, base_delay_s=0.2, max_delay_s=10.0)


class InboxListener:
    def __init__(self, config: PostgresConfig, signal: Callable[[int], None]) -> None:
        self._config = config
        self._signal = signal
        self._redact = redactor(config.dsn)
        self.connected = asyncio.Event()  # set while listening (tests wait for it)

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._listen()
                attempt = 0  # the server ended a working connection: reconnect at once
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # psycopg's errors, a connection refused, a timeout: keep trying
                self.connected.clear()
                attempt += 1
                log.warning(
                    "inbox listener: connection lost, retrying (attempt %d): %s",
                    attempt,
                    self._redact(f"{type(exc).__name__}: {exc}"),
                )
            self.connected.clear()
            await asyncio.sleep(_BACKOFF.delay(max(attempt, 1), random=random.random()))

    async def _listen(self) -> None:
        conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
            conninfo(self._config), autocommit=True
        )
        async with conn:
            await conn.execute(f"LISTEN {INBOX_CHANNEL}")
            self.connected.set()
            self._signal(0)  # anything committed while nobody listened
            async for notice in conn.notifies():
                for notification_id in notification_ids(notice.payload):
                    self._signal(notification_id)


def notification_ids(payload: str) -> list[int]:
    """The ids a signal names, comma-separated (one signal per ingest transaction)."""
    try:
        return [max(0, int(part)) for part in payload.split(",")]
    except ValueError:
        return [0]  # not ours: treat it as "look at everything"
