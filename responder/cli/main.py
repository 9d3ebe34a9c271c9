"""canary-responder: pull a bad canary out of production on the Alertmanager notification itself.

Commands: serve, check-config, demo, emulator, audit verify|tail|list|show; operator commands (clients of a
running server): replay, restore, rollback, pause, resume, status, incident list|show|link.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from responder import __version__
from responder.cli import audit_client, client, incidents
from responder.cli.format import format_entry
from responder.config import ConfigError, load_settings, read_settings
from responder.store import AuditEntry, StoreUnavailable, VerifyReport
from responder.store.factory import tail_audit, tail_file, verify_audit, verify_file

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):  # a command without its action (`audit`): that command's help
        getattr(args, "help_of", parser).print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"configuration error:\n{_indent(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Usage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canary-responder", description=__doc__)
    parser.add_argument("--version", action="version", version=f"canary-responder {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the responder")
    _config_argument(serve)
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a configuration and print targets and policies")
    _config_argument(check)
    check.add_argument(
        "--skip-secrets", action="store_true", help="validate the structure only; do not read secret files or variables"
    )
    check.add_argument(
        "--probe",
        action="store_true",
        help="also connect, read-only, to Kubernetes (and Slack, Teams, Prometheus where configured); exit 1 if one"
        " fails",
    )
    check.set_defaults(func=_check_config)

    audit_parser = sub.add_parser("audit", help="read or verify the audit log")
    audit_parser.set_defaults(help_of=audit_parser)
    audit = audit_parser.add_subparsers(metavar="ACTION")
    verify = audit.add_parser("verify", help="recompute the hash chain; exit 1 on any tampering")
    tail = audit.add_parser("tail", help="print the most recent entries")
    for cmd in (verify, tail):
        group = cmd.add_mutually_exclusive_group(required=cmd is tail)
        group.add_argument("--db", type=Path, help="audit database file (SQLite)")
        group.add_argument(
            "--config", "-c", type=Path, help="take the database (SQLite or PostgreSQL) and HMAC key from the config"
        )
        if cmd is verify:
            group.add_argument(
                "--server",
                help="ask a running server instead (the default when CANARY_RESPONDER_URL is set; see --token-file)",
            )
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

    client.add_commands(sub)
    audit_client.add_commands(audit)
    incidents.add_commands(sub)

    demo = sub.add_parser("demo", help="roll back a canary on an embedded Kubernetes API emulator")
    demo.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the demo's files here (a previous demo's files in it are removed first; nothing else is)",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (by default it is removed at the end)"
    )
    demo.add_argument(
        "--serve", action="store_true", help="keep the responder up afterwards (until Ctrl-C) to open the page link"
    )
    demo.set_defaults(func=_demo)

    emulator = sub.add_parser(
        "emulator",
        help="run the Kubernetes API emulator (as the demo does) and write a kubeconfig for it, to try serve by hand",
    )
    emulator.add_argument("--kubeconfig", type=Path, required=True, help="write the kubeconfig pointing at it here")
    emulator.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    emulator.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    emulator.add_argument("--namespace", default="shop", help="namespace of the sample apps (default shop)")
    emulator.add_argument(
        "--app",
        action="append",
        dest="apps",
        default=None,
        help="a sample app (repeatable; default checkout, payments)",
    )
    emulator.set_defaults(func=_emulator)
    return parser


def _config_argument(parser: argparse.ArgumentParser) -> None:
    """The configuration file, given the same way to every command: as an argument or with --config."""
    parser.add_argument("config_path", type=Path, nargs="?", metavar="CONFIG", help="YAML configuration file")
    parser.add_argument("--config", "-c", type=Path, default=None, help="the same, as an option")


def _config_path(args: argparse.Namespace) -> Path:
    given: list[Path] = [p for p in (args.config_path, args.config) if p is not None]
    if len(given) != 1:
        raise _Usage("give the configuration file once: CONFIG or --config CONFIG")
    return given[0]


class _Usage(Exception):
    """A command line that cannot be run as given: exit 2 with the message."""


def _serve(args: argparse.Namespace) -> int:
    from responder.app import build_app
    from responder.cli.serve import run

    settings, secrets = load_settings(_config_path(args))
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(settings, lambda: build_app(settings, secrets))


def _check_config(args: argparse.Namespace) -> int:
    from responder.cli import check

    path = _config_path(args)
    settings, secrets = (read_settings(path), None) if args.skip_secrets else load_settings(path)
    print(check.describe_settings(settings))
    problems, warnings = asyncio.run(check.file_problems(settings))
    if args.skip_secrets:  # checked where it cannot serve (CI, a rendered chart): files come from mounted Secrets
        warnings += [f"{problem} (not an error with --skip-secrets)" for problem in problems]
        problems = []
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        print("configuration error:", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return EXIT_USAGE
    if not args.probe:
        return EXIT_OK
    if secrets is None:
        raise _Usage("--probe needs the secrets: leave out --skip-secrets")
    found = check.run_probes(settings, secrets)
    print("\n".join(check.probe_lines(found)))
    return EXIT_OK if all(p.ok for p in found) else EXIT_FAIL


def _audit_verify(args: argparse.Namespace) -> int:
    if args.server or (args.db is None and args.config is None and os.environ.get("CANARY_RESPONDER_URL")):
        return client.run(audit_client.audit_verify, args)
    if args.db is None and args.config is None:
        raise _Usage("audit verify needs --db FILE, --config FILE or --server URL (or CANARY_RESPONDER_URL set)")
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
    return asyncio.run(run_demo(workdir=args.workdir, serve=args.serve, keep=args.keep))


def _emulator(args: argparse.Namespace) -> int:
    try:
        from responder.cli import emulator  # needs the demo extra (kmock)
    except ImportError as exc:
        print(
            f"error: the emulator needs {exc.name or 'kmock'}:\n  pip install 'canary-responder[demo]'", file=sys.stderr
        )
        return EXIT_USAGE
    apps = args.apps or ["checkout", "payments"]
    return asyncio.run(
        emulator.run(
            kubeconfig_path=args.kubeconfig, host=args.host, port=args.port, namespace=args.namespace, apps=apps
        )
    )


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
