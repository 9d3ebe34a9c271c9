"""``canary-responder audit list | show | verify --server``: the audit log of a running server.

``list`` answers like ``tail``: the newest N entries that match, oldest first. ``--since`` takes an RFC 3339
time, a date, or an age (``90s``, ``15m``, ``2h``, ``3d``, ``1w``); ``--kind`` a kind or a prefix of kinds
(``restore``). Anything else is a usage error (exit 2) that names what is accepted.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from responder.cli.client import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, ClientError, common, expect, request, show
from responder.cli.format import KINDS, expand_kind, format_entry

SINCE_FORMATS = (
    "accepted: an RFC 3339 time (2026-11-29T08:00:00Z), a date (2026-11-29, midnight UTC),"
    " or an age: 90s, 15m, 2h, 3d, 1w"
)
_AGE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PAGE = 1000  # the server's largest page


def parse_since(text: str, *, now: datetime) -> str:
    """``--since`` as the RFC 3339 UTC time the server takes; ClientError(EXIT_USAGE) naming the formats."""
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        moment = now - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ClientError(EXIT_USAGE, f"--since {text!r} is not a time; {SINCE_FORMATS}") from None
        if moment.tzinfo is None:
            if "T" in text or " " in text:
                raise ClientError(EXIT_USAGE, f"--since {text!r} has no UTC offset; {SINCE_FORMATS}")
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def kinds_of(text: str | None) -> list[str | None]:
    if not text:
        return [None]
    found = expand_kind(text)
    if not found:
        raise ClientError(EXIT_USAGE, f"--kind {text!r} names no kind; kinds (or a prefix of them): {', '.join(KINDS)}")
    return [*found]


async def audit_list(args: argparse.Namespace) -> int:
    kinds = kinds_of(args.kind)
    since = parse_since(args.since, now=datetime.now(UTC)) if args.since else None
    entries: list[dict[str, Any]] = []
    for kind in kinds:
        query = {"target": args.target, "kind": kind, "since": since}
        entries += await newest(args, {k: v for k, v in query.items() if v}, args.n)
    entries = sorted(entries, key=lambda e: int(e["seq"]))[-args.n :]
    show(args, {"entries": entries}, "\n".join(format_entry(e) for e in entries) or "(no entries)")
    return EXIT_OK


async def newest(args: argparse.Namespace, query: dict[str, str], n: int) -> list[dict[str, Any]]:
    """The newest ``n`` matching entries. The API pages forward from a seq: start near the head and look further
    back until ``n`` are found or the whole log was read."""
    code, status = await request(args, "GET", "/api/v1/status")
    expect(code, status, 200)
    head = int(status.get("audit", {}).get("length") or 0)
    window = max(4 * n, 200)
    while True:
        after = max(0, head - window)
        found = await _pages(args, {**query, "after": str(after)})
        if len(found) >= n or after == 0:
            return found[-n:]
        window *= 8


async def _pages(args: argparse.Namespace, query: dict[str, str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        code, payload = await request(args, "GET", f"/api/v1/audit?{urlencode({**query, 'limit': _PAGE})}")
        expect(code, payload, 200)
        found += payload["entries"]
        if payload.get("next_after") is None:
            return found
        query = {**query, "after": str(payload["next_after"])}


async def audit_show(args: argparse.Namespace) -> int:
    code, payload = await request(args, "GET", f"/api/v1/audit/{args.seq}")
    expect(code, payload, 200)
    text = format_entry(payload) + "\n" + json.dumps(payload.get("data"), indent=2, sort_keys=True)
    show(args, payload, text)
    return EXIT_OK


async def audit_verify(args: argparse.Namespace) -> int:
    expected = {"expect_head": args.expect_head, "expect_length": args.expect_length}
    qs = urlencode({k: v for k, v in expected.items() if v is not None})
    code, payload = await request(args, "GET", f"/api/v1/audit/verify{'?' + qs if qs else ''}")
    if code not in (200, 409):
        expect(code, payload, 200)
    text = (
        f"audit chain OK: {payload['length']} entries, head {payload['head']}"
        if payload["ok"]
        else "audit chain BROKEN:\n" + "\n".join(f"  {p}" for p in payload["problems"])
    )
    show(args, payload, text)
    return EXIT_OK if payload["ok"] else EXIT_REFUSED


def add_commands(audit: Any) -> None:
    """``audit list`` and ``audit show`` (``audit verify --server`` is registered with the local verify)."""
    ls = audit.add_parser(
        "list",
        help="the newest entries from a running server (like tail)",
        description="The newest N entries that match, oldest first (like tail). Usage errors exit 2.",
    )
    ls.add_argument("-n", type=_count, default=50, metavar="N", help="how many of the newest entries (default 50)")
    ls.add_argument("--target", help="namespace/deployment (cluster/namespace/deployment with several clusters)")
    ls.add_argument("--kind", help=f"a kind or a prefix of kinds (restore): {', '.join(KINDS)}")
    ls.add_argument("--since", help="from this time on: " + SINCE_FORMATS.removeprefix("accepted: "))
    common(ls, audit_list, actor=False)
    one = audit.add_parser("show", help="one entry from a running server")
    one.add_argument("seq", type=_count, help="the entry's number (#seq in list and tail)")
    common(one, audit_show, actor=False)


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 1000000")
    return int(text)
