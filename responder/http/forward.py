"""Operator requests reaching a replica that does not lead are carried to the one that does.

With several replicas on the shared store, the Service spreads requests over all of them, but pausing, replaying
and restoring are acts of the leader (its decision state, its lanes, its fencing term). A follower passes the
request on, unchanged (credentials included: the leader checks them again), and returns the leader's answer. A
request that was already forwarded once is never forwarded again: if it lands on a replica that is not the leader
any more (leadership changed meanwhile), the answer is 503 and the caller retries.
"""

from __future__ import annotations

from aiohttp import web

from responder.http.errors import Rejection
from responder.http.server import RUNTIME, read_body

FORWARDED = "X-Canary-Responder-Forwarded"
_PASSED = ("Authorization", "Content-Type", "Accept", "User-Agent")


async def to_leader(request: web.Request) -> web.StreamResponse:
    if FORWARDED in request.headers:
        raise Rejection(503, "not_leader", "leadership moved while the request was forwarded; retry")
    services = request.app[RUNTIME].require()
    body = await read_body(request)
    headers = {name: request.headers[name] for name in _PASSED if name in request.headers}
    answer = await services.leadership.forward(request.method, request.path_qs, headers, body)
    if answer is None:
        raise Rejection(503, "no_leader", "no replica leads right now (an election is under way); retry")
    status, answered, content = answer
    return web.Response(status=status, body=content, headers=answered)
