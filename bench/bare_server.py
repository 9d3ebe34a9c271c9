"""The baseline for the ingest benchmark: an aiohttp handler that reads the body and answers 200, nothing else.
It runs on the same event loop as ``canary-responder serve`` (uvloop when installed), so the ratio compares
handlers, not loops."""

import asyncio
import sys

from aiohttp import web

try:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
except ImportError:
    pass


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"status": "ok"})


app = web.Application(client_max_size=1024 * 1024)
app.router.add_post("/api/v1/alerts", accept)
app.router.add_get("/healthz", lambda request: accept(request))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
