"""The baseline for the ingest benchmark: an aiohttp handler that reads the body and answers 200, nothing else."""

import sys

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"status": "ok"})


app = web.Application(client_max_size=1024 * 1024)
app.router.add_post("/api/v1/alerts", accept)
app.router.add_get("/healthz", lambda request: accept(request))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
