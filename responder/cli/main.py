"""canary-responder: pull a bad canary out of production on the Alertmanager notification itself.

Commands: serve, check-config, demo, audit verify|tail|list|show; operator commands (clients of a running
server): replay, restore, pause, resume, status.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from responder import __version__
from responder.cli import client
from responder.cli.format import format_entry
from responder.config import ConfigError, Settings, format_duration, load_settings, read_settings
from responder.store import AuditEntry, StoreUnavailable, VerifyReport
from responder.store.factory import tail_audit, tail_file, verify_audit, verify_file

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"configuration error:\n{_indent(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canary-responder", description=__doc__)
    parser.add_argument("--version", action="version", version=f"canary-responder {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the responder")
    serve.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration file")
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a configuration and print targets and policies")
    check.add_argument("config", type=Path)
    check.add_argument(
        "--skip-secrets", action="store_true", help="validate the structure only; do not read secret files or variables"
    )
    check.set_defaults(func=_check_config)

    audit = sub.add_parser("audit", help="read or verify the audit log").add_subparsers(metavar="ACTION")
    verify = audit.add_parser("verify", help="recompute the hash chain; exit 1 on any tampering")
    tail = audit.add_parser("tail", help="print the most recent entries")
    for cmd in (verify, tail):
        group = cmd.add_mutually_exclusive_group(required=True)
        group.add_argument("--db", type=Path, help="audit database file (SQLite)")
        group.add_argument(
            "--config", "-c", type=Path, help="take the database (SQLite or PostgreSQL) and HMAC key from the config"
        )
        if cmd is verify:
            group.add_argument("--server", help="ask a running server instead (see also --token-file)")
            verify.add_argument("--token-file", type=Path, default=None, help="admin or read token for --server")
            verify.add_argument("--json", action="store_true", help="print the server's JSON answer")
    verify.add_argument(
        "--expect-head",
        type=_chain_hash,
        default=None,
        metavar="HASH",
        help="a head seen earlier (status, metrics, logs): fail if it is no longer in the chain (truncated tail)",
    )
    verify.add_argument(
        "--expect-length",
        type=_chain_length,
        default=None,
        metavar="N",
        help="fail if the chain has fewer than N entries (with --expect-head: if entry N is not that head)",
    )
    verify.set_defaults(func=_audit_verify)
    tail.add_argument("-n", type=int, default=20, help="number of entries (default 20)")
    tail.add_argument("--json", action="store_true", help="print raw JSON lines")
    tail.set_defaults(func=_audit_tail)

    client.add_commands(sub, audit)

    demo = sub.add_parser("demo", help="roll back a canary on an embedded Kubernetes API emulator")
    demo.add_argument("--workdir", type=Path, default=None, help="keep the demo's files here")
    demo.set_defaults(func=_demo)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from responder.app import build_app

    settings, secrets = load_settings(args.config)
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = build_app(settings, secrets)
    _use_uvloop()
    web.run_app(app, host=settings.listen.host, port=settings.listen.port, print=None, access_log=None)
    return EXIT_OK


def _use_uvloop() -> None:
    """uvloop's faster event loop when installed (it is a dependency on Linux); asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _check_config(args: argparse.Namespace) -> int:
    settings = read_settings(args.config) if args.skip_secrets else load_settings(args.config)[0]
    print(describe_settings(settings))
    return EXIT_OK


def describe_settings(settings: Settings) -> str:
    lines = [
        f"listen: {settings.listen.host}:{settings.listen.port} (body limit {settings.listen.body_limit_bytes} B)",
        f"dry_run: {settings.dry_run}",
        f"database: {settings.storage.path}"
        if settings.storage.backend == "sqlite"
        else "database: PostgreSQL (storage.postgres.dsn, shared by every replica)",
        f"allowed namespaces: {', '.join(settings.safety.allowed_namespaces)}",
        f"canary marker: {settings.safety.canary_marker}",
        "targets:",
    ]
    for t in settings.targets:
        match = ", ".join(f"{k}={v}" for k, v in t.match.items()) or "(any alert)"
        traffic = ", ".join(
            f"{x.kind}/{x.name}" + (f" ({', '.join(f'{k}={v}' for k, v in x.options)})" if x.options else "")
            for x in t.traffic_templates()
        )
        lines.append(
            f"  - {t.name}: when {match} -> namespace {t.namespace}, deployment {t.deployment},"
            f" traffic {traffic or '(none: scale-down only)'}"
            + (f", clusters {', '.join(t.clusters)}" if t.clusters else "")
        )
    for name, namespaces in sorted((settings.cluster_namespaces() or {}).items()):
        lines.append(
            f"cluster {name} (alert label {settings.cluster_label}={name}): namespaces {', '.join(sorted(namespaces))}"
        )
    if settings.gitops.enabled:
        hook = settings.gitops.webhook
        lines.append(f"gitops: annotate {settings.gitops.annotate}, webhook {hook.url if hook else '(none)'}")
    lines.append("policies (first match wins; an alert no policy matches is only recorded):")
    for p in settings.policies:
        match = ", ".join(f"{k}={v}" for k, v in p.match.items()) or "(any alert)"
        extra = f" for {format_duration(p.persist_for)}" if p.mode.value == "persist" else ""
        lines.append(f"  - {p.name}: when {match} -> {p.mode.value}{extra}")
    cap = settings.rollback_cap
    lines += [
        f"coalesce window: {format_duration(settings.coalesce_window)}",
        f"cooldown: {format_duration(settings.cooldown)}",
        f"rollback cap: {cap.max} per {format_duration(cap.window)}",
        f"dedupe ttl: {format_duration(settings.dedupe_ttl)}",
    ]
    auth = settings.auth
    sources = [ref.describe() for ref in auth.webhook.bearer_tokens]
    lines.append(f"webhook auth: bearer from {', '.join(sources) or '(none)'}; basic: {bool(auth.webhook.basic)}")
    return "\n".join(lines)


def _audit_verify(args: argparse.Namespace) -> int:
    if getattr(args, "server", None):
        return client.run(client.audit_verify, args)
    expect = {"expect_length": args.expect_length, "expect_head": args.expect_head}
    try:
        if args.db is not None:
            report: VerifyReport = verify_file(args.db, None, **expect)
        else:
            settings, secrets = load_settings(args.config)
            report = verify_audit(settings, secrets, **expect)
    except StoreUnavailable as exc:  # the shared database cannot be reached (no secret in the text)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if report.ok:
        print(f"audit chain OK: {report.length} entries, head {report.head}")
        return EXIT_OK
    print(f"audit chain BROKEN ({len(report.problems)} problems):", file=sys.stderr)
    for problem in report.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_FAIL


def _chain_hash(text: str) -> str:
    if len(text) != 64 or not set(text) <= set("0123456789abcdefABCDEF"):
        raise argparse.ArgumentTypeError("must be a chain hash: 64 hexadecimal characters")
    return text.lower()


def _chain_length(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 2**63 - 1:  # SQLite INTEGER
        raise argparse.ArgumentTypeError("must be a whole number of entries, 0 or more")
    return int(text)


def _audit_tail(args: argparse.Namespace) -> int:
    try:
        if args.db is not None:
            entries: list[AuditEntry] = tail_file(args.db, limit=args.n)
        else:
            settings, secrets = load_settings(args.config)
            entries = tail_audit(settings, secrets, limit=args.n)
    except StoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    for entry in entries:
        print(orjson.dumps(entry.as_dict()).decode() if args.json else format_entry(entry.as_dict()))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    try:
        from responder.cli.demo import run_demo  # the emulator it runs on needs the demo extra (kmock)
    except ImportError as exc:
        print(
            f"error: the demo runs on the Kubernetes API emulator, which needs {exc.name or 'kmock'}:\n"
            "  pip install 'canary-responder[demo]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return asyncio.run(run_demo(workdir=args.workdir))


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
