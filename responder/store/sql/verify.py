"""Reading and verifying the audit chain of either backend (the CLI's ``audit verify`` and the store's ``verify``):
any edited, deleted, inserted or reordered entry, or edited raw notification, is reported; a truncated tail is
caught against a head kept elsewhere. A damaged database gives a report, never a crash of verify."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from responder.store.chain import GENESIS, check_entry
from responder.store.records import AuditEntry, VerifyReport
from responder.store.sql.dialect import Conn, Dialect
from responder.store.sql.reads import where_equal


def read_audit(
    conn: Conn,
    *,
    after: int = 0,
    limit: int = 100,
    target: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
    newest_first: bool = False,
) -> Iterator[AuditEntry]:
    """Entries after seq ``after``, filtered by target, kind and an ISO-8601 UTC time range [since, until)."""
    order = "DESC" if newest_first else "ASC"
    where, args = where_equal(target=target, kind=kind)
    if since is not None:
        where, args = f"{where} AND ts >= ?", (*args, since)
    if until is not None:
        where, args = f"{where} AND ts < ?", (*args, until)
    sql = f"SELECT seq, ts, kind, target, actor, data, prev, hash FROM audit WHERE seq > ?{where} ORDER BY seq {order}"
    for row in conn.execute(f"{sql} LIMIT ?", (after, *args, limit)):
        yield AuditEntry(row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5]), row[6], row[7])


_MAX_PROBLEMS = 20  # a wrong key or a rewritten chain flags every entry; the first ones tell the story


def verify_chain(
    conn: Conn,
    dialect: Dialect,
    key: bytes | None,
    *,
    expect_length: int | None = None,
    expect_head: str | None = None,
) -> VerifyReport:
    """Recompute the chain: any edited, deleted, inserted or reordered entry, or edited raw notification, fails.

    Deleting the last entries leaves a shorter chain that is still valid; only a head kept elsewhere (status,
    metrics, the stdout copy) reveals it, so ``expect_length`` and ``expect_head`` are checked too when given.
    """
    problems: list[str] = []
    more, prev, length = 0, GENESIS, 0
    raw_hashes = dict(conn.execute("SELECT id, sha256 FROM notifications"))
    for row in dialect.scan(conn, "SELECT seq, ts, kind, target, actor, data, prev, hash FROM audit ORDER BY seq"):
        found = _check_row(conn, row, expected_seq=length + 1, prev=prev, key=key, raw_hashes=raw_hashes)
        room = max(0, _MAX_PROBLEMS - len(problems))
        problems, more = problems + found[:room], more + len(found[room:])
        prev, length = str(row[7]), int(row[0])  # walk on to the end: length and head are the real ones
    if more:
        problems.append(f"... and {more} more problems")
    problems.extend(check_expected_head(conn, length=expect_length, head=expect_head))
    return VerifyReport(ok=not problems, length=length, head=prev, problems=problems)


def _check_row(
    conn: Conn,
    row: Sequence[Any],
    *,
    expected_seq: int,
    prev: str,
    key: bytes | None,
    raw_hashes: dict[int, str],
) -> list[str]:
    entry = _row_entry(row)
    if entry is None:
        return [f"entry {row[0]}: not a well-formed entry (modified)"]
    problems = check_entry(entry, expected_seq, prev, key)
    if entry.kind == "receipt":
        problems.extend(_check_receipt(conn, entry, raw_hashes))
    elif entry.kind == "receipt.repeats":
        problems.extend(_check_repeats(entry, raw_hashes))
    return problems


def _row_entry(row: Sequence[Any]) -> AuditEntry | None:
    """None for a row no writer produces (a column of another type, data that is not a JSON object): an edited
    file must give a report, not a crash of verify."""
    if not all(isinstance(row[i], str) for i in (1, 2, 4, 6, 7)) or not isinstance(row[3], str | None):
        return None
    try:
        data = orjson.loads(row[5])
    except (orjson.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    return AuditEntry(row[0], row[1], row[2], row[3], row[4], data, row[6], row[7])


def check_expected_head(conn: Conn, *, length: int | None, head: str | None) -> list[str]:
    """A head seen earlier must still be in the chain: entry ``length`` exists and, with ``head``, has that hash
    (without ``length``, some entry has it). Key-independent: the stored hashes are checked by :func:`verify_chain`.
    """
    if length is None:
        return [] if head is None else _check_head_anywhere(conn, head.lower())
    actual = GENESIS if length == 0 else _hash_at(conn, length)
    if actual is None:
        last = conn.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0]
        return [f"entry {length}: missing, the chain ends at entry {last} (the tail was truncated)"]
    if head is not None and actual != head.lower():
        return [f"entry {length}: hash {actual} is not the expected head {head.lower()} (truncated and rewritten)"]
    return []


def _hash_at(conn: Conn, seq: int) -> str | None:
    row = conn.execute("SELECT hash FROM audit WHERE seq=?", (seq,)).fetchone()
    return str(row[0]) if row else None


def _check_head_anywhere(conn: Conn, head: str) -> list[str]:
    if head == GENESIS or conn.execute("SELECT 1 FROM audit WHERE hash=? LIMIT 1", (head,)).fetchone():
        return []
    last = conn.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0]
    return [f"expected head {head}: not in the chain (ends at entry {last}; the tail was truncated or rewritten)"]


def _check_repeats(entry: AuditEntry, raw_hashes: dict[int, str]) -> list[str]:
    """Each notification a repeat cites is stored, with the hash the repeat was received with (the stored body
    itself is checked against that hash by its own receipt)."""
    problems = []
    for cited in entry.data.get("notifications") or [None]:
        nid = cited.get("notification_id") if isinstance(cited, dict) else None
        if not isinstance(nid, int) or nid not in raw_hashes:
            problems.append(f"entry {entry.seq}: repeated notification {nid} is missing")
        elif cited.get("sha256") != raw_hashes[nid]:
            problems.append(
                f"entry {entry.seq}: repeated notification {nid} no longer has the hash it was repeated with"
            )
    return problems


def _check_receipt(conn: Conn, entry: AuditEntry, raw_hashes: dict[int, str]) -> list[str]:
    nid = entry.data.get("notification_id")
    if not isinstance(nid, int) or nid not in raw_hashes:
        return [f"entry {entry.seq}: notification {nid} is missing"]
    raw = conn.execute("SELECT raw FROM notifications WHERE id=?", (nid,)).fetchone()[0]
    actual = hashlib.sha256(raw if isinstance(raw, bytes) else str(raw).encode()).hexdigest()  # TEXT if edited
    if actual != entry.data.get("sha256") or actual != raw_hashes[nid]:
        return [f"entry {entry.seq}: raw notification {nid} was modified"]
    return []
