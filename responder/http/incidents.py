"""Incident reports over HTTP: ``GET /api/v1/incidents`` and ``GET /api/v1/incidents/{id}``.

JSON by default; Markdown (the post-rollback template) with ``Accept: text/markdown`` or a ``.md`` suffix.
Readable with the admin token or the optional read token (Bearer): no or unknown credentials are 401, the
webhook token 403, in the usual JSON error shape. With ``incident_pages`` configured the list also hands its
readers signed links to the HTML pages (:mod:`responder.http.pages`): each incident's ``page_url`` and the list's
``list_page_url``, which is how a token holder opens the list in a browser. The handlers only read the database (through
:class:`responder.notify.outbox.IncidentReader`); metrics not captured when the Slack message went out are queried
from Prometheus at the incident's time, best effort.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from responder.http.admin import require
from responder.http.server import Rejection, Role, error_response, json_response
from responder.notify.incident import Incident, Links, api_link, headline, list_page_link, page_link
from responder.notify.incidents import IncidentReader
from responder.notify.report import report, report_markdown

MARKDOWN = "text/markdown"


@dataclass(slots=True)
class IncidentsRuntime:
    """Filled in at startup (responder.app) once the store is open."""

    reader: IncidentReader | None = None
    links: Links = Links()

    def require(self) -> IncidentReader:
        if self.reader is None:
            raise web.HTTPServiceUnavailable(text="starting up")
        return self.reader


INCIDENTS = web.AppKey("incidents", IncidentsRuntime)


def add_incident_routes(app: web.Application) -> None:
    app[INCIDENTS] = IncidentsRuntime()
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{incident}", get_incident)


def _authorize(request: web.Request) -> None:
    """The admin or the read token (the operator API's roles): none or unknown 401, the webhook token 403."""
    require(request, Role.READ)


def _wants_markdown(request: web.Request) -> bool:
    return MARKDOWN in request.headers.get("Accept", "")


def _markdown(text: str) -> web.Response:
    return web.Response(text=text, content_type=MARKDOWN, charset="utf-8")


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:  # "²".isdigit(), int("²") fails
        raise Rejection(400, "bad_request", "limit must be an integer between 1 and 1000")
    return int(raw)


async def list_incidents(request: web.Request) -> web.Response:
    try:
        _authorize(request)
        limit = _limit(request)
    except Rejection as rejection:
        return error_response(rejection)
    runtime = request.app[INCIDENTS]
    incidents = await runtime.require().recent(limit=limit)
    if _wants_markdown(request):
        return _markdown(_list_markdown(incidents, runtime.links))
    body: dict[str, object] = {"incidents": [_summary(i, runtime.links) for i in incidents]}
    if runtime.links.pages is not None:
        body["list_page_url"] = list_page_link(runtime.links)
    return json_response(body)


async def get_incident(request: web.Request) -> web.Response:
    incident_id = request.match_info["incident"]
    markdown = _wants_markdown(request) or incident_id.endswith(".md")
    incident_id = incident_id.removesuffix(".md")
    try:
        _authorize(request)
    except Rejection as rejection:
        return error_response(rejection)
    runtime = request.app[INCIDENTS]
    reader = runtime.require()
    incident = await reader.load(incident_id, live_metrics=True)
    if incident is None:
        return error_response(Rejection(404, "not_found", f"no incident {incident_id!r}"))
    followups = await reader.followups(incident_id)
    if markdown:
        return _markdown(report_markdown(incident, runtime.links, followups))
    return json_response(report(incident, runtime.links, followups))


def _summary(incident: Incident, links: Links) -> dict[str, object]:
    return {
        "id": incident.id,
        "kind": incident.kind,
        "status": incident.status,
        "target": incident.target,
        "date": incident.created_at,
        "headline": headline(incident),
        "url": api_link(incident.id, links),
        **({"page_url": page_link(incident.id, links)} if links.pages is not None else {}),
    }


def _list_markdown(incidents: list[Incident], links: Links) -> str:
    rows = ["# Incidents", "", "| date | incident | status | target |", "|---|---|---|---|"]
    for i in incidents:
        rows.append(f"| {i.created_at} | [{i.id}]({api_link(i.id, links)}.md) | {i.status} | {i.target or '-'} |")
    return "\n".join(rows) + "\n"
