"""Incident pages in a browser: ``GET /incidents/{id}`` (the incident), its ``/report.md`` and ``/report.json``
downloads, and ``GET /incidents`` (the list), registered when ``incident_pages`` is configured.

Reached through signed, expiring links (:mod:`responder.notify.signing`) instead of a bearer token, because that is
what a phone opening a Slack or Teams link can present. A link grants one incident (or the list) and nothing else:
every link a page hands out (downloads, the list's entries) expires with the link that opened it. A missing,
damaged, forged or expired link gets an HTML error page (403, or 410 for a genuine link past its expiry), counted
like a request without credentials (the rejected-requests metric and the per-minute summary, never one audit entry
each: anyone can send them). Pages are server-rendered with Jinja2, autoescaping everything; the Content Security
Policy allows no script at all and only the page's own stylesheet, and no Referer leaves the page (the address
carries the signature).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from importlib.resources import files
from typing import Any

import jinja2
import orjson
from aiohttp import web

from responder.config import format_duration
from responder.http.incidents import INCIDENTS, IncidentsRuntime
from responder.http.pages_view import (
    AUDIT_LABEL,
    epoch_iso,
    evidence,
    is_web_url,
    stable_health,
    timeline,
)
from responder.http.runtime import REJECTIONS, RUNTIME
from responder.notify.incident import (
    Incident,
    Links,
    canary_images,
    checklist,
    commands,
    headline,
    link_list,
    metric_rows,
    page_link,
    traffic_weight,
    verdict,
)
from responder.notify.incidents import IncidentReader
from responder.notify.report import report, report_markdown
from responder.notify.signing import LIST_SUBJECT, LinkCheck, PageSigner, incident_subject
from responder.store import StoreUnavailable

log = logging.getLogger("responder.http")

LIST_LIMIT = 100
KIND_LABELS = {
    "alert": "alert",
    "decision": "decision",
    "step": "step",
    "notification": "notification",
    "followup": "since then",
}


def add_page_routes(app: web.Application) -> None:
    app.router.add_get("/incidents", incident_list_page)
    app.router.add_get("/incidents/{incident}", incident_page)
    app.router.add_get("/incidents/{incident}/report.md", incident_markdown)
    app.router.add_get("/incidents/{incident}/report.json", incident_json)
    app.router.add_get("/incidents/{rest:.*}", unknown_page)  # anything else under /incidents: HTML too


# -- the pages --


async def incident_page(request: web.Request) -> web.Response:
    found = await _incident(request)
    if isinstance(found, web.Response):
        return found
    try:
        deliveries = await _deliveries(found.reader, found.incident.id)
    except StoreUnavailable:
        return _unavailable()
    html = render_incident(
        found.incident, found.links, followups=found.followups, deliveries=deliveries, expires=found.expires
    )
    return _html(html, 200)


def render_incident(
    incident: Incident,
    links: Links,
    *,
    followups: Sequence[Mapping[str, Any]],
    deliveries: Sequence[Mapping[str, Any]],
    expires: int,
) -> str:
    """The incident page's HTML; ``links`` already pinned to the expiry of the link that opened it."""
    metrics = incident.metrics
    context = {
        "incident": incident,
        "headline": headline(incident),
        "verdict": verdict(incident),
        "images": canary_images(incident),
        "weight": traffic_weight(incident),
        "stable": stable_health(incident),
        "metric_rows": metric_rows(metrics) if metrics and not metrics.unavailable else [],
        "metrics_at": metrics.at if metrics else "",
        "metrics_unavailable": (metrics.unavailable if metrics else None) or "not collected",
        "timeline": timeline(incident, followups, deliveries),
        "kind_labels": KIND_LABELS,
        "evidence": evidence(incident),
        "links": [(label, url, is_web_url(url)) for label, url in link_list(incident, links) if label != AUDIT_LABEL],
        "downloads": {
            "markdown": page_link(incident.id, links, suffix="/report.md"),
            "json": page_link(incident.id, links, suffix="/report.json"),
        },
        "commands": commands(incident),
        "checklist": checklist(incident),
        "expires_at": epoch_iso(expires),
    }
    return _page("incident.html", context)


async def incident_markdown(request: web.Request) -> web.Response:
    found = await _incident(request)
    if isinstance(found, web.Response):
        return found
    text = report_markdown(found.incident, found.links, found.followups)
    return _download(text.encode(), "text/markdown", f"{_filename(found.incident.id)}.md")


async def incident_json(request: web.Request) -> web.Response:
    found = await _incident(request)
    if isinstance(found, web.Response):
        return found
    body = orjson.dumps(report(found.incident, found.links, found.followups), option=orjson.OPT_INDENT_2)
    return _download(body, "application/json", f"{_filename(found.incident.id)}.json")


async def incident_list_page(request: web.Request) -> web.Response:
    checked = _check(request, LIST_SUBJECT)
    if isinstance(checked, web.Response):
        return checked
    runtime, links, expires = checked
    try:
        incidents = await runtime.require().recent(limit=LIST_LIMIT)
    except StoreUnavailable:
        return _unavailable()
    rows = [
        {
            "at": i.created_at,
            "headline": headline(i),
            "status": i.status,
            "target": i.target or "-",
            "url": page_link(i.id, links),
        }
        for i in incidents
    ]
    return _html(_page("list.html", {"rows": rows, "expires_at": epoch_iso(expires)}), 200)


async def unknown_page(request: web.Request) -> web.Response:
    return _error_page(404, "No such page", ["Incident pages live at /incidents/<incident id>."])


# -- the link check --


Checked = tuple[IncidentsRuntime, Links, int]


def _check(request: web.Request, subject: str) -> Checked | web.Response:
    """The request's link judged for ``subject``; on success the links to hand out, pinned to its expiry."""
    runtime = request.app[INCIDENTS]
    signer = runtime.links.pages
    if runtime.reader is None or signer is None:
        return _unavailable()
    expires, sig = request.query.get("expires"), request.query.get("sig")
    judged = signer.check(subject, expires, sig)
    if judged is not LinkCheck.VALID or expires is None:
        _count_refusal(request, judged)
        return _refused(judged, signer, expires)
    return runtime, replace(runtime.links, pages=signer.pinned(int(expires))), int(expires)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Opened:
    """An incident a valid link opened: what its page and downloads show."""

    incident: Incident
    links: Links  # pinned to the expiry of the link that opened it
    expires: int
    reader: IncidentReader
    followups: Sequence[Mapping[str, Any]]


async def _incident(request: web.Request) -> _Opened | web.Response:
    incident_id = request.match_info["incident"]
    checked = _check(request, incident_subject(incident_id))
    if isinstance(checked, web.Response):
        return checked
    runtime, links, expires = checked
    reader = runtime.require()
    try:
        incident = await reader.load(incident_id, live_metrics=True)
        followups = await reader.followups(incident_id) if incident is not None else []
    except StoreUnavailable:
        return _unavailable()
    if incident is None:  # a genuine link to an incident no longer stored (a new database?)
        return _error_page(404, "No such incident", [f"No incident {incident_id} is recorded here."])
    return _Opened(incident=incident, links=links, expires=expires, reader=reader, followups=followups)


def _count_refusal(request: web.Request, judged: LinkCheck) -> None:
    """Counted and summed up like a request without credentials; the log line shows the path, never the query."""
    services = request.app[RUNTIME].services
    if services is not None:
        services.metrics.rejected.labels(judged.value).inc()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "(no route)"
    summary = request.app[REJECTIONS]
    if summary.add(reason=judged.value, route=route, remote=request.remote or "", at=time.time()):
        log.warning(
            "refused page %s from %s: %s (more like it: one summary a minute)",
            request.path,
            request.remote,
            judged.value,
        )


def _refused(judged: LinkCheck, signer: PageSigner, expires: str | None) -> web.Response:
    again = "Links in messages are not renewed. Anyone with the read token can hand out a fresh one:"
    again += " GET /api/v1/incidents lists each incident's page_url."
    if judged is LinkCheck.EXPIRED:
        ttl = format_duration(timedelta(seconds=signer.ttl_s))
        until = int(expires or 0)
        if until > signer.clock():  # genuine, but longer-lived than links are now (link_ttl was shortened)
            first = f"This link was made to last until {epoch_iso(until)}, longer than the {ttl} links last now."
        else:
            first = f"This link expired at {epoch_iso(until)}. Links to incident pages are valid for {ttl}."
        return _error_page(410, "This link has expired", [first, again])
    titles = {
        LinkCheck.MISSING: (
            "This page needs a signed link",
            "The address alone is not enough: the link in the message carries a signature and an expiry.",
        ),
        LinkCheck.MALFORMED: ("This link is incomplete", "Part of it is missing or damaged (cut when it was copied?)."),
        LinkCheck.FORGED: (
            "This link is not valid",
            "Its signature does not match: the signing key was rotated,"
            " which revokes every link sent, or the link was altered.",
        ),
    }
    title, why = titles.get(judged, titles[LinkCheck.FORGED])
    return _error_page(403, title, [why, again])


def _unavailable() -> web.Response:
    response = _error_page(
        503,
        "Not available right now",
        ["The responder is starting or its database is unavailable. Try again in a few seconds."],
    )
    response.headers["Retry-After"] = "5"
    return response


async def _deliveries(reader: IncidentReader, incident_id: str) -> list[dict[str, Any]]:
    """The incident's first message at each destination, and how its delivery went."""
    rows = await reader.store.read(lambda r: r.outbox_rows(incident_id))
    return [
        {"destination": r.destination, "state": r.state, "attempts": r.attempts, "at": epoch_iso(r.created_at)}
        for r in rows
        if r.role == "incident"
    ]


# -- rendering --


def _page(template: str, context: Mapping[str, Any]) -> str:
    css, _ = _stylesheet()
    return _templates().get_template(template).render(css=css, **context)


def _html(html: str, status: int) -> web.Response:
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=_headers())


def _error_page(status: int, title: str, lines: list[str]) -> web.Response:
    return _html(_page("error.html", {"status": status, "title": title, "lines": lines}), status)


def _download(body: bytes, content_type: str, filename: str) -> web.Response:
    headers = {**_headers(), "Content-Disposition": f'attachment; filename="{filename}"'}
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)


def _filename(incident_id: str) -> str:
    return "incident-" + "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in incident_id)


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("responder.http", "templates"),
        autoescape=True,  # every template, whatever its name: alert labels and annotations are hostile input
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def _stylesheet() -> tuple[str, str]:
    """The one stylesheet, inlined (no external assets), and its CSP hash."""
    css = files("responder.http").joinpath("templates/pages.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return css, f"'sha256-{digest}'"


def _headers() -> dict[str, str]:
    _, style_hash = _stylesheet()
    return {
        # No script may run, whatever an alert's labels say; only this page's own stylesheet applies.
        "Content-Security-Policy": f"default-src 'none'; style-src {style_hash}; img-src data:; base-uri 'none';"
        " form-action 'none'; frame-ancestors 'none'",
        "Referrer-Policy": "no-referrer",  # the address carries the signature: never send it to a linked site
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        "X-Robots-Tag": "noindex, nofollow",
    }
