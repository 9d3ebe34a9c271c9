"""``canary-responder incident list | show ID [--md] | link ID``: incidents of a running server, for people.

``link`` prints the signed link of the incident's page, as the server mints it for messages (it needs
``incident_pages`` configured on the server: the CLI never holds the signing key).
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote, urlencode

from responder.cli.client import EXIT_OK, EXIT_REFUSED, ClientError, common, expect, request, show
from responder.cli.format import incident_line, incident_text


async def incident_list(args: argparse.Namespace) -> int:
    code, payload = await request(args, "GET", f"/api/v1/incidents?{urlencode({'limit': args.n})}")
    expect(code, payload, 200)
    items = payload.get("incidents", [])
    show(args, payload, "\n".join(incident_line(i) for i in items) or "(no incidents)")
    return EXIT_OK


async def incident_show(args: argparse.Namespace) -> int:
    if args.md:
        code, text = await _markdown(args, args.id)
        print(text, end="" if text.endswith("\n") else "\n")
        return EXIT_OK
    payload = await _report(args, args.id)
    show(args, payload, incident_text(payload))
    return EXIT_OK


async def incident_link(args: argparse.Namespace) -> int:
    payload = await _report(args, args.id)
    page = f"/incidents/{quote(args.id, safe=':')}?"
    links = payload.get("links") or {}
    signed = next((str(url) for url in links.values() if page in str(url) and "sig=" in str(url)), None)
    if signed is None:
        raise ClientError(
            EXIT_REFUSED,
            "the server has no incident pages (configure incident_pages and its signing key); the API report is"
            f" at /api/v1/incidents/{quote(args.id, safe=':')}",
        )
    show(args, {"id": args.id, "url": signed}, signed)
    return EXIT_OK


async def _report(args: argparse.Namespace, incident_id: str) -> dict[str, Any]:
    code, payload = await request(args, "GET", f"/api/v1/incidents/{quote(incident_id, safe=':')}")
    if code == 404:
        raise ClientError(EXIT_REFUSED, f"no incident {incident_id!r} (see `canary-responder incident list`)")
    expect(code, payload, 200)
    return dict(payload)


async def _markdown(args: argparse.Namespace, incident_id: str) -> tuple[int, str]:
    code, payload = await request(args, "GET", f"/api/v1/incidents/{quote(incident_id, safe=':')}.md", text=True)
    if code == 404:
        raise ClientError(EXIT_REFUSED, f"no incident {incident_id!r} (see `canary-responder incident list`)")
    if code != 200:
        raise ClientError(EXIT_REFUSED, f"{code}: {str(payload)[:200]}")
    return code, str(payload)


def add_commands(sub: Any) -> None:
    incident = sub.add_parser("incident", help="incidents of a running server: list, show, link")
    actions = incident.add_subparsers(metavar="ACTION")
    incident.set_defaults(help_of=incident)
    ls = actions.add_parser("list", help="the newest incidents, newest first")
    ls.add_argument("-n", type=int, default=20, metavar="N", help="how many (default 20, at most 1000)")
    common(ls, incident_list, actor=False)
    one = actions.add_parser("show", help="one incident's report (--md: the Markdown post-incident report)")
    one.add_argument("id", help="the incident id (incident list)")
    one.add_argument("--md", action="store_true", help="print the Markdown report")
    common(one, incident_show, actor=False)
    link = actions.add_parser("link", help="the signed link to the incident's page (needs incident_pages)")
    link.add_argument("id")
    common(link, incident_link, actor=False)
