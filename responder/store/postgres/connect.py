"""Connections to the shared PostgreSQL: the settings, opening a connection, the ``?`` adapter the shared SQL
expects (:class:`PgConn`), text that may hold NUL characters, and keeping the DSN's secrets out of every message.

- The DSN (a libpq connection string or URI) may carry a password: :class:`PostgresConfig` never shows it, and
  :func:`redactor` takes it (and the whole DSN) out of any error text before it reaches a log, an answer or an
  exception (libpq echoes parts of a malformed connection string; connection errors name the host and user).
- Timeouts are set per session with ``set_config`` (so that ``options`` in the DSN stay the user's):
  ``statement_timeout`` bounds every statement, waits for the audit chain's lock included, and
  ``idle_in_transaction_session_timeout`` frees that lock if a replica stalls inside a transaction (the writer
  never idles in one: it runs its units of work back to back). TCP keepalives notice a server that went away.
- PostgreSQL's TEXT cannot hold NUL (U+0000), which SQLite and Python strings can (an alert's generatorURL, a
  delivery error): every string is stored with U+0000 as U+FFFF "0" and U+FFFF itself doubled, and read back the
  same way, so any Python string round-trips. Canonical JSON never holds a raw NUL (it is escaped as ``\\u0000``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import pq
from psycopg.adapt import Buffer
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.string import StrDumperUnknown, TextLoader

from responder.store.records import StoreUnavailable

APPLICATION = "canary-responder"


@dataclass(frozen=True, kw_only=True)
class PostgresConfig:
    dsn: str = field(repr=False)  # a secret: it may carry the password
    connect_timeout_s: float = 5.0
    statement_timeout_s: float = 5.0

    def __repr__(self) -> str:
        return (
            f"PostgresConfig(dsn=<secret>, connect_timeout_s={self.connect_timeout_s},"
            f" statement_timeout_s={self.statement_timeout_s})"
        )


# -- secrets out of messages --


def redactor(dsn: str) -> Callable[[str], str]:
    """A function that removes the DSN and its password (as written, and decoded) from a text."""
    secrets = {dsn, *_passwords(dsn)}
    ordered = sorted((s for s in secrets if s), key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, "***")
        return text

    return redact


def _passwords(dsn: str) -> set[str]:
    found: set[str] = set()
    with contextlib.suppress(Exception):  # a malformed DSN: what can be found is still removed
        found.add(str(conninfo_to_dict(dsn).get("password") or ""))
    with contextlib.suppress(Exception):
        password = urlsplit(dsn).password if "://" in dsn else None
        if password:
            found |= {password, unquote(password)}
    for match in re.finditer(r"password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)", dsn):
        value = match.group(1)
        found |= {value, value.strip("'")}
    return found


# -- text with NUL characters --

_ESC = "\uffff"
_ESCAPED = re.compile("\uffff(.)", re.DOTALL)


def escape_text(text: str) -> str:
    if "\0" not in text and _ESC not in text:
        return text
    return text.replace(_ESC, _ESC + _ESC).replace("\0", _ESC + "0")


def unescape_text(text: str) -> str:
    if _ESC not in text:
        return text
    return _ESCAPED.sub(lambda m: _ESC if m[1] == _ESC else "\0" if m[1] == "0" else m[0], text)


class _NulSafeDumper(StrDumperUnknown):
    def dump(self, obj: str) -> Buffer | None:
        return super().dump(escape_text(obj))


class _NulSafeLoader(TextLoader):
    def load(self, data: Buffer) -> bytes | str:
        loaded = super().load(data)
        return unescape_text(loaded) if isinstance(loaded, str) else loaded


# -- the connection the shared SQL uses --


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PgConn:
    """A psycopg connection that takes the shared SQL's ``?`` placeholders."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        return self.raw.execute(_pg_sql(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        cursor = self.raw.cursor()
        rows = [tuple(p) for p in parameters]
        if rows:  # none: psycopg would still enter and leave pipeline mode, a round trip for nothing
            cursor.executemany(_pg_sql(sql), rows)
        return cursor

    def scan(self, sql: str, *, itersize: int = 2000) -> Iterator[Any]:
        """A server-side cursor (inside the current transaction): rows arrive ``itersize`` at a time."""
        with self.raw.cursor(name="scan") as cursor:
            cursor.itersize = itersize
            cursor.execute(_pg_sql(sql), ())
            yield from cursor

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def rollback(self) -> None:
        """End a transaction in progress, if any, and never raise (the connection may be gone)."""
        if self.raw.closed or self.raw.info.transaction_status in (
            pq.TransactionStatus.IDLE,
            pq.TransactionStatus.UNKNOWN,
        ):
            return
        with contextlib.suppress(psycopg.Error):
            self.raw.execute("ROLLBACK")

    @property
    def usable(self) -> bool:
        return not self.raw.closed and not self.raw.broken and not self.in_transaction


def connect(config: PostgresConfig) -> PgConn:
    """A new autocommit connection (the writer begins and commits its own transactions) with the session's
    timeouts; StoreUnavailable, without any secret in it, when the server cannot be reached."""
    redact = redactor(config.dsn)
    info = conninfo(config)
    try:
        raw = psycopg.connect(info, autocommit=True)
    except Exception as exc:  # a connection error's text can hold the DSN's parts: never chain the original
        raise StoreUnavailable(redact(f"cannot connect to PostgreSQL: {exc}")) from None
    try:
        _prepare(raw, config)
    except BaseException as exc:
        raw.close()
        if isinstance(exc, psycopg.Error):
            raise StoreUnavailable(redact(f"cannot set up the PostgreSQL session: {exc}")) from None
        raise
    return PgConn(raw)


def conninfo(config: PostgresConfig) -> str:
    """The DSN with the responder's defaults for what it does not say (timeouts, keepalives, UTF-8).

    A DSN libpq cannot parse is StoreUnavailable without libpq's words: they quote the token it stumbled on, which
    may be a piece of the password (``password=two words`` unquoted)."""
    try:
        given = conninfo_to_dict(config.dsn)
    except Exception:
        raise StoreUnavailable(
            "cannot connect to PostgreSQL: storage.postgres.dsn is not a valid connection string or URI"
        ) from None
    defaults = {
        "connect_timeout": str(max(2, round(config.connect_timeout_s))),
        "application_name": APPLICATION,
        "client_encoding": "UTF8",
        "keepalives": "1",
        "keepalives_idle": "10",
        "keepalives_interval": "5",
        "keepalives_count": "3",
    }
    return make_conninfo(config.dsn, **{k: v for k, v in defaults.items() if k not in given})


def _prepare(raw: psycopg.Connection[Any], config: PostgresConfig) -> None:
    encoding = raw.info.parameter_status("server_encoding")
    if encoding != "UTF8":
        raise StoreUnavailable(f"the database's encoding is {encoding!r}, not UTF8: create it with ENCODING 'UTF8'")
    raw.adapters.register_dumper(str, _NulSafeDumper)
    raw.adapters.register_loader("text", _NulSafeLoader)
    timeout = f"{max(1, round(config.statement_timeout_s * 1000))}ms"
    raw.execute(
        "SELECT set_config('statement_timeout', %s, false), set_config('idle_in_transaction_session_timeout', %s,"
        " false)",
        (timeout, timeout),
    )
