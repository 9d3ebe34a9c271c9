"""The audit hash chain, independent of any database: canonical JSON, the entry hash, and the entry checks.

Entry ``n`` stores the hash of entry ``n-1`` (``prev``) and its own hash over ``prev`` + the canonical JSON of its
body (seq, ts, kind, target, actor, data): SHA-256, or HMAC-SHA256 with a key. Editing, deleting, inserting or
reordering any entry breaks a link or a hash; a truncated tail is caught by comparing with a head kept elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

from responder.store.records import AuditEntry

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def entry_hash(prev: str, body: dict[str, Any], key: bytes | None) -> str:
    message = prev.encode() + canonical(body)
    if key:
        return hmac.digest(key, message, "sha256").hex()  # one-shot: the same value as hmac.new(...).hexdigest()
    return hashlib.sha256(message).hexdigest()


def check_entry(entry: AuditEntry, expected_seq: int, prev: str, key: bytes | None) -> list[str]:
    problems = []
    if entry.seq != expected_seq:
        problems.append(f"entry {entry.seq}: expected seq {expected_seq} (entries deleted or reordered)")
    if entry.prev != prev:
        problems.append(f"entry {entry.seq}: previous-hash link broken")
    if entry_hash(entry.prev, entry.body(), key) != entry.hash:
        problems.append(f"entry {entry.seq}: content does not match its hash (modified)")
    return problems
