"""``canary-responder replay | restore | pause | resume | status | audit ... --server``: clients of a running
server's operator API.

The server URL comes from ``--server`` or ``CANARY_RESPONDER_URL`` (default http://127.0.0.1:8080), the token
from ``--token-file`` or ``CANARY_RESPONDER_TOKEN``. Exit codes: 0 done; 1 refused or failed (a restore that
found the canary changed, a broken audit chain); 2 usage; 3 server unreachable or an unexpected answer;
4 credentials rejected (401/403).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from responder.cli.format import format_entry

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 1, 2, 3, 4
DEFAULT_URL = "http://127.0.0.1:8080"


class ClientError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=None, help=f"server URL (env CANARY_RESPONDER_URL, default {DEFAULT_URL})")
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding the admin or read token (env CANARY_RESPONDER_TOKEN)",
    )
    parser.add_argument("--json", action="store_true", help="print the server's JSON answer")


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        return str(args.token_file.read_text(encoding="utf-8").strip())
    token = os.environ.get("CANARY_RESPONDER_TOKEN", "").strip()
    if not token:
        raise ClientError(EXIT_USAGE, "no token: use --token-file or set CANARY_RESPONDER_TOKEN")
    return token


async def request(
    args: argparse.Namespace, method: str, path: str, body: Any = None, *, wait_s: float = 60.0
) -> tuple[int, Any]:
    base = (args.server or os.environ.get("CANARY_RESPONDER_URL") or DEFAULT_URL).rstrip("/")
    headers = {"Authorization": f"Bearer {_token(args)}"}
    timeout = aiohttp.ClientTimeout(total=wait_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, base + path, json=body, headers=headers) as response,
        ):
            payload = await response.json(content_type=None)
            status = response.status
    except TimeoutError:
        raise ClientError(
            EXIT_UNREACHABLE,
            f"{base} did not answer within {wait_s:.0f}s; the operation may still be running on the server"
            " (see `canary-responder audit list --server ...` for its result)",
        ) from None
    except (aiohttp.ClientError, ValueError) as exc:
        raise ClientError(EXIT_UNREACHABLE, f"cannot talk to {base}: {exc or type(exc).__name__}") from None
    if status in (401, 403):
        raise ClientError(EXIT_AUTH, f"{status}: {payload.get('message', 'not allowed')}")
    return status, payload


def run(command: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    try:
        code: int = asyncio.run(command(args))
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


def _show(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True) if args.json else text)


def _expect(status: int, payload: Any, *ok: int) -> None:
    if status not in ok:
        raise ClientError(
            EXIT_UNREACHABLE if status >= 500 else EXIT_REFUSED,
            f"{status} {payload.get('error', '')}: {payload.get('message', payload)}",
        )


# -- commands --


async def replay(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"dry_run": not args.execute, "force": args.force, "actor": args.actor}
    if args.payload is not None:
        body["payload"] = json.loads(args.payload.read_text(encoding="utf-8"))
    else:
        body["notification_id"] = args.notification_id
    status, payload = await request(args, "POST", "/api/v1/replay", body)
    _expect(status, payload, 200)
    lines = [
        f"{'DRY RUN: nothing executed' if payload['dry_run'] else 'executed'}{' (force)' if payload['force'] else ''}"
    ]
    for d in payload["decisions"]:
        lines.append(
            f"  {d['alertname']:<28} {d['status']:<8} -> {d['outcome'].upper():<10} {d['target'] or '-'}: {d['reason']}"
        )
    for step in payload["plan"]:
        lines.append(f"  plan for {step['target']}: {' -> '.join(step['steps'])}")
    if payload["dry_run"] and payload["plan"]:
        lines.append("  run again with --execute to act")
    _show(args, payload, "\n".join(lines))
    return EXIT_OK


async def restore(args: argparse.Namespace) -> int:
    path = f"/api/v1/targets/{args.namespace}/{args.deployment}/restore"
    body = {"dry_run": args.dry_run, "actor": args.actor, "cluster": args.cluster}
    status, payload = await request(args, "POST", path, body, wait_s=args.wait)
    if status >= 500 and "status" not in payload:
        _expect(status, payload, 200)
    lines = [
        f"restore of {payload.get('target')}: {str(payload.get('status', payload.get('error'))).upper()}"
        f"{' - ' + payload['message'] if payload.get('message') else ''}"
    ]
    for step in payload.get("steps", []):
        lines.append(f"  {step['step']:<16} {step['result']:<8} {step['before']} -> {step['after']} {step['message']}")
    _show(args, payload, "\n".join(lines))
    return EXIT_OK if payload.get("status") in ("restored", "dry_run") else EXIT_REFUSED


async def set_paused(args: argparse.Namespace) -> int:
    path = "/api/v1/pause" if args.pause else "/api/v1/resume"
    status, payload = await request(args, "POST", path, {"actor": args.actor, "reason": args.reason})
    _expect(status, payload, 200)
    state = "PAUSED: decisions are recorded and held, nothing is executed" if payload["paused"] else "RESUMED"
    _show(args, payload, f"{state} (by {payload['actor']} at {payload['at']})")
    return EXIT_OK


async def status(args: argparse.Namespace) -> int:
    code, payload = await request(args, "GET", "/api/v1/status")
    _expect(code, payload, 200)
    pause = payload["paused"]
    paused = f"yes, by {pause.get('actor')}: {pause.get('reason')}" if pause.get("paused") else "no"
    text = (
        f"version {payload['version']}  dry_run {payload['dry_run']}  leader {payload['leader']}\n"
        f"paused: {paused}\nbacklog: {payload['backlog']}\n"
        f"audit: {payload['audit']['length']} entries, head {payload['audit']['head']}"
    )
    _show(args, payload, text)
    return EXIT_OK


async def audit_verify(args: argparse.Namespace) -> int:
    expect = {"expect_head": args.expect_head, "expect_length": args.expect_length}
    qs = urlencode({k: v for k, v in expect.items() if v is not None})
    code, payload = await request(args, "GET", f"/api/v1/audit/verify{'?' + qs if qs else ''}")
    if code not in (200, 409):
        _expect(code, payload, 200)
    text = (
        f"audit chain OK: {payload['length']} entries, head {payload['head']}"
        if payload["ok"]
        else "audit chain BROKEN:\n" + "\n".join(f"  {p}" for p in payload["problems"])
    )
    _show(args, payload, text)
    return EXIT_OK if payload["ok"] else EXIT_REFUSED


async def audit_list(args: argparse.Namespace) -> int:

    query = {"limit": str(args.n), "target": args.target, "kind": args.kind, "since": args.since}
    qs = urlencode({k: v for k, v in query.items() if v})
    code, payload = await request(args, "GET", f"/api/v1/audit?{qs}")
    _expect(code, payload, 200)
    _show(args, payload, "\n".join(format_entry(e) for e in payload["entries"]) or "(no entries)")
    return EXIT_OK


async def audit_show(args: argparse.Namespace) -> int:
    code, payload = await request(args, "GET", f"/api/v1/audit/{args.seq}")
    _expect(code, payload, 200)
    print(json.dumps(payload, indent=2, sort_keys=True))
    return EXIT_OK


def add_commands(sub: Any, audit: Any) -> None:
    """Register the client commands on the CLI's sub-parsers."""
    rp = sub.add_parser("replay", help="replay a stored notification or a payload file (dry-run unless --execute)")
    source = rp.add_mutually_exclusive_group(required=True)
    source.add_argument("--notification-id", type=int, help="id of a stored notification (see audit receipts)")
    source.add_argument("--payload", type=Path, help="a file holding an Alertmanager webhook payload")
    rp.add_argument("--execute", action="store_true", help="act on the decisions instead of only showing them")
    rp.add_argument("--force", action="store_true", help="bypass dedupe and cooldown (never the safety checks)")
    _common(rp, replay)

    rs = sub.add_parser("restore", help="undo the last rollback of a canary")
    rs.add_argument("namespace")
    rs.add_argument("deployment")
    rs.add_argument("--dry-run", action="store_true", help="check and show the plan, change nothing")
    rs.add_argument(
        "--cluster",
        default="",
        help="multi-cluster: which cluster's canary (required when the server has clusters configured)",
    )
    rs.add_argument(
        "--wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long to wait for the server's answer (default 600); the server itself waits up to its"
        " restore.ready_timeout (default 120s) for the restored pods to be ready before letting traffic back."
        " Exit codes: 0 restored, 1 refused or failed (run it again once the pods are ready), 3 no answer",
    )
    _common(rs, restore)

    for name, is_pause in (("pause", True), ("resume", False)):
        p = sub.add_parser(name, help="pause the responder (kill switch)" if is_pause else "resume acting")
        p.add_argument("--reason", default="", help="why (recorded in the audit log)")
        p.set_defaults(pause=is_pause)
        _common(p, set_paused)

    st = sub.add_parser("status", help="version, dry-run, pause state, backlog, audit head")
    _common(st, status, actor=False)

    ls = audit.add_parser("list", help="entries from a running server")
    ls.add_argument("-n", type=int, default=50)
    ls.add_argument("--target", help="namespace/deployment")
    ls.add_argument("--kind", help="receipt, alert, decision, action, rollback.result, replay, pause, ...")
    ls.add_argument("--since", help="RFC 3339 time")
    _common(ls, audit_list, actor=False)
    show = audit.add_parser("show", help="one entry from a running server")
    show.add_argument("seq", type=int)
    _common(show, audit_show, actor=False)


def _common(
    parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace], Any], *, actor: bool = True
) -> None:
    add_connection_options(parser)
    if actor:
        parser.add_argument(
            "--actor",
            default=os.environ.get("USER", "admin")[:64] or "admin",
            help="who is acting (recorded in the audit log; default $USER)",
        )
    parser.set_defaults(func=lambda args: run(command, args))
