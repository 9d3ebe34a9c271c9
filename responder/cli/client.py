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
import contextlib
import json
import os
import pwd
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from responder.cli.format import change, progress_line

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


def server_url(args: argparse.Namespace) -> str:
    """``--server``, else CANARY_RESPONDER_URL, else the default; ``host:port`` alone means http://host:port."""
    raw = (getattr(args, "server", None) or os.environ.get("CANARY_RESPONDER_URL") or DEFAULT_URL).strip()
    url = raw if "://" in raw else f"http://{raw}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(EXIT_USAGE, f"not a server URL: {raw!r} (expected http://HOST:PORT or https://HOST)")
    return url.rstrip("/")


def default_actor() -> str:
    """Who is acting, as the audit log records it: $USER, else $LOGNAME, else the account of this process."""
    for name in ("USER", "LOGNAME"):
        found = os.environ.get(name, "").strip()
        if found:
            return found[:64]
    try:
        return pwd.getpwuid(os.getuid()).pw_name[:64]
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        return str(args.token_file.read_text(encoding="utf-8").strip())
    token = os.environ.get("CANARY_RESPONDER_TOKEN", "").strip()
    if not token:
        raise ClientError(EXIT_USAGE, "no token: use --token-file or set CANARY_RESPONDER_TOKEN")
    return token


async def request(
    args: argparse.Namespace, method: str, path: str, body: Any = None, *, wait_s: float = 60.0, text: bool = False
) -> tuple[int, Any]:
    """One call to the server: (status, JSON answer, or the text with ``text``); ClientError when there is no
    usable answer (exit 3) or the credentials are refused (exit 4)."""
    base = server_url(args)
    headers = {"Authorization": f"Bearer {_token(args)}"}
    timeout = aiohttp.ClientTimeout(total=wait_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, base + path, json=body, headers=headers) as response,
        ):
            status = response.status
            payload = (
                await response.text() if text and response.status == 200 else await response.json(content_type=None)
            )
    except TimeoutError:
        raise ClientError(
            EXIT_UNREACHABLE,
            f"{base} did not answer within {wait_s:.0f}s; the operation may still be running on the server"
            " (see `canary-responder audit list --server ...` for its result)",
        ) from None
    except (aiohttp.ClientError, ValueError) as exc:
        raise ClientError(EXIT_UNREACHABLE, f"cannot talk to {base}: {_why(exc)}") from None
    if status in (401, 403):
        message = payload.get("message", "not allowed") if isinstance(payload, dict) else "not allowed"
        raise ClientError(EXIT_AUTH, f"{status}: {message}")
    if not isinstance(payload, dict | str):
        raise ClientError(EXIT_UNREACHABLE, f"{base} gave an unexpected answer ({status})")
    return status, payload


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection refused or host unknown ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, ValueError):
        return "the answer was not JSON (is this a canary-responder server?)"
    return str(exc) or type(exc).__name__


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


def show(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True) if args.json else text)


def expect(status: int, payload: Any, *ok: int) -> None:
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
    expect(status, payload, 200)
    acted = bool(payload["plan"])
    if payload["dry_run"]:
        head = "DRY RUN: nothing executed"
    else:
        head = "EXECUTED" if acted else "NOTHING EXECUTED: no decision acts"
    lines = [f"{head}{' (force)' if payload['force'] else ''}"]
    for d in payload["decisions"]:
        lines.append(
            f"  {d['alertname']:<28} {d['status']:<8} -> {d['outcome'].upper():<10} {d['target'] or '-'}: {d['reason']}"
        )
    for step in payload["plan"]:
        lines.append(f"  plan for {step['target']}: {' -> '.join(step['steps'])}")
    lines += _replay_hints(payload, execute=args.execute)
    show(args, payload, "\n".join(lines))
    return EXIT_REFUSED if args.execute and not acted else EXIT_OK


def _replay_hints(payload: dict[str, Any], *, execute: bool) -> list[str]:
    outcomes = {str(d["outcome"]) for d in payload["decisions"]}
    if payload["plan"]:
        return [] if execute else ["  run again with --execute to act"]
    hints = []
    if not payload["force"] and outcomes & {"duplicate", "suppressed", "coalesced"}:
        hints.append("  already seen or in cooldown: add --force to decide them again (safety checks still apply)")
    if "held" in outcomes:
        hints.append("  held: see the reason (resume a pause first; a full rollback cap frees up with time)")
    return hints or ["  no decision would act"]


async def restore(args: argparse.Namespace) -> int:
    target = (
        f"{args.cluster}/{args.namespace}/{args.deployment}" if args.cluster else f"{args.namespace}/{args.deployment}"
    )
    path = f"/api/v1/targets/{args.namespace}/{args.deployment}/restore"
    body = {"dry_run": args.dry_run, "actor": args.actor, "cluster": args.cluster}
    progress = _Progress(args, target, await _audit_head(args))
    watching = asyncio.ensure_future(progress.watch(wait_s=args.wait))
    try:
        status, payload = await request(args, "POST", path, body, wait_s=args.wait)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError, ClientError):
            await watching
    with contextlib.suppress(ClientError):
        await progress.once()  # the steps recorded since the last look
    if status >= 500 and "status" not in payload:
        expect(status, payload, 200)
    result = str(payload.get("status", payload.get("error")))
    lines = [
        f"restore of {payload.get('target') or target} by {args.actor}: {result.upper()}"
        f"{' - ' + payload['message'] if payload.get('message') else ''}"
    ]
    for step in payload.get("steps", []):
        what = change(step.get("before"), step.get("after"))
        lines.append(f"  {step['step']:<16} {step['result']:<8} {what} {step.get('message') or ''}".rstrip())
    if result == "failed":
        lines.append("  the canary's traffic stays off; run the same restore again once its pods are ready")
    show(args, payload, "\n".join(lines))
    return EXIT_OK if payload.get("status") in ("restored", "dry_run") else EXIT_REFUSED


async def _audit_head(args: argparse.Namespace) -> int:
    """The newest audit seq now (0 if unknown): a restore's progress is read from the entries after it."""
    try:
        code, payload = await request(args, "GET", "/api/v1/status", wait_s=10.0)
    except ClientError:
        return 0
    return int(payload.get("audit", {}).get("length") or 0) if code == 200 else 0


class _Progress:
    """A restore's steps as the server records them (its audit entries after ``after``), printed on stderr once
    each, and a line now and then while the server waits for the pods."""

    def __init__(self, args: argparse.Namespace, target: str, after: int) -> None:
        self.args, self.target, self.after = args, target, after
        self.started = self.said = time.monotonic()

    async def watch(self, *, wait_s: float) -> None:
        while self.after:
            await asyncio.sleep(1.0)
            await self.once()
            if time.monotonic() - self.said >= 15:
                waited = time.monotonic() - self.started
                print(f"  ... still waiting ({waited:.0f}s of up to {wait_s:.0f}s)", file=sys.stderr, flush=True)
                self.said = time.monotonic()

    async def once(self) -> None:
        if not self.after:
            return
        qs = urlencode({"target": self.target, "after": self.after, "limit": 100})
        code, payload = await request(self.args, "GET", f"/api/v1/audit?{qs}", wait_s=10.0)
        for entry in payload.get("entries", []) if code == 200 else []:
            self.after = max(self.after, int(entry["seq"]))
            line = progress_line(entry)
            if line:
                print(f"  ... {line}", file=sys.stderr, flush=True)
                self.said = time.monotonic()


async def despite_stable(args: argparse.Namespace) -> int:
    path = f"/api/v1/targets/{args.namespace}/{args.deployment}/rollback"
    body = {"despite_stable": args.despite_stable, "actor": args.actor, "cluster": args.cluster}
    status, payload = await request(args, "POST", path, body, wait_s=args.wait)
    if "status" not in payload:
        expect(status, payload, 200)
    lines = [f"rollback of {payload.get('target')} despite stable: {str(payload['status']).upper()}"]
    lines += [f"  {s['step']:<28} {s['result']:<10} {s.get('message') or ''}" for s in payload.get("steps", [])]
    show(args, payload, "\n".join(lines))
    return EXIT_OK if payload.get("status") in ("done", "partial") else EXIT_REFUSED


async def set_paused(args: argparse.Namespace) -> int:
    path = "/api/v1/pause" if args.pause else "/api/v1/resume"
    status, payload = await request(args, "POST", path, {"actor": args.actor, "reason": args.reason})
    expect(status, payload, 200)
    state = "PAUSED: decisions are recorded and held, nothing is executed" if payload["paused"] else "RESUMED"
    show(args, payload, f"{state} (by {payload['actor']} at {payload['at']})")
    return EXIT_OK


async def status(args: argparse.Namespace) -> int:
    code, payload = await request(args, "GET", "/api/v1/status")
    expect(code, payload, 200)
    pause = payload["paused"]
    paused = f"yes, by {pause.get('actor')}: {pause.get('reason')}" if pause.get("paused") else "no"
    text = (
        f"version {payload['version']}  dry_run {payload['dry_run']}  leader {payload['leader']}\n"
        f"paused: {paused}\nbacklog: {payload['backlog']}\n"
        f"audit: {payload['audit']['length']} entries, head {payload['audit']['head']}"
    )
    show(args, payload, text)
    return EXIT_OK


def add_commands(sub: Any) -> None:
    """Register the client commands on the CLI's sub-parsers."""
    rp = sub.add_parser("replay", help="replay a stored notification or a payload file (dry-run unless --execute)")
    source = rp.add_mutually_exclusive_group(required=True)
    source.add_argument("--notification-id", type=int, help="id of a stored notification (see audit receipts)")
    source.add_argument("--payload", type=Path, help="a file holding an Alertmanager webhook payload")
    rp.add_argument("--execute", action="store_true", help="act on the decisions instead of only showing them")
    rp.add_argument("--force", action="store_true", help="bypass dedupe and cooldown (never the safety checks)")
    common(rp, replay)

    rs = sub.add_parser(
        "restore",
        help="undo the rollbacks of a canary since the last restore (scale back, wait for ready pods, traffic on)",
        description="Undo the rollbacks of a canary since the last restore: scale it back to the recorded replicas,"
        " wait until those pods are ready (the server's restore.ready_timeout, default 120s), then let canary"
        " traffic in again. Progress is printed on stderr as the server records each step. Exit codes: 0 restored"
        " (or checked, with --dry-run); 1 refused (the canary changed since, nothing to restore) or failed (pods"
        " not ready in time: traffic stays off, run it again); 2 usage; 3 no answer within --wait (it may still"
        " be running: `canary-responder audit list --kind restore`); 4 credentials rejected.",
    )
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
        help="how long to wait for the server's answer (default 600, longer than the server's own wait for"
        " ready pods, restore.ready_timeout)",
    )
    common(rs, restore)

    rb = sub.add_parser(
        "rollback",
        help="run a rollback HELD because stable had no ready replica, acting anyway (--despite-stable)",
    )
    rb.add_argument("namespace")
    rb.add_argument("deployment")
    rb.add_argument("--despite-stable", action="store_true", required=True, help="say that you override the guard")
    rb.add_argument("--cluster", default="", help="multi-cluster: which cluster's canary")
    rb.add_argument("--wait", type=float, default=120.0, metavar="SECONDS", help="how long to wait for the answer")
    common(rb, despite_stable)

    for name, is_pause in (("pause", True), ("resume", False)):
        p = sub.add_parser(name, help="pause the responder (kill switch)" if is_pause else "resume acting")
        p.add_argument("--reason", default="", help="why (recorded in the audit log)")
        p.set_defaults(pause=is_pause)
        common(p, set_paused)

    st = sub.add_parser("status", help="version, dry-run, pause state, backlog, audit head")
    common(st, status, actor=False)


def common(
    parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace], Any], *, actor: bool = True
) -> None:
    """The connection options (and ``--actor`` for commands that act) and the command to run."""
    add_connection_options(parser)
    if actor:
        parser.add_argument(
            "--actor",
            default=default_actor(),
            help="who is acting, recorded in the audit log (default $USER, else $LOGNAME, else this account)",
        )
    parser.set_defaults(func=lambda args: run(command, args))
