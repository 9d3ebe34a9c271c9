"""``canary-responder serve``: bind the port first, then start the responder, then say in one line where it
listens, which Kubernetes API it talks to and in which mode it acts; on SIGTERM or SIGINT shut down and say so.

Exit codes: 0 after a clean shutdown; 1 when it cannot start (the port is taken or not allowed, the Kubernetes
configuration cannot be loaded, the database cannot be opened), with one line saying why; 2 for a configuration
error (:mod:`responder.cli.main`).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import socket
from collections.abc import Callable

from aiohttp import web

from responder.config import Settings
from responder.ports import ClusterError
from responder.store import StoreUnavailable

log = logging.getLogger("responder.serve")

EXIT_OK, EXIT_CANNOT_START = 0, 1


def kubernetes_endpoint(settings: Settings) -> str:
    """Where the responder's Kubernetes API is, in words (no credential)."""
    kube = settings.kubernetes
    mode = kube.mode if kube.mode != "auto" else ("url" if kube.url else "kubeconfig")
    if mode == "url":
        return f"{kube.url} (url)"
    if mode == "in_cluster":
        return "in-cluster service account"
    where = str(kube.kubeconfig) if kube.kubeconfig else "$KUBECONFIG or ~/.kube/config"
    return f"kubeconfig {where}" + (f", context {kube.context}" if kube.context else ", its current context")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts: a taken port fails here, before any "ready"."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def bind_problem(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: the port is already in use (another canary-responder?)"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: no such address on this machine (listen.host)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


async def serve(app: web.Application, settings: Settings, sock: socket.socket) -> int:
    """Run ``app`` on the bound ``sock`` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    received: list[str] = []
    _on_signals(stop, received)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    try:
        await runner.setup()  # the responder's startup: store, Kubernetes client, engine
    except (ClusterError, StoreUnavailable, OSError) as exc:
        log.error("canary-responder cannot start: %s", exc)
        await runner.cleanup()
        return EXIT_CANNOT_START
    try:
        freeze_startup_objects()
        await web.SockSite(runner, sock).start()
        host, port = sock.getsockname()[:2]
        log.info(
            "canary-responder listening on http://%s:%d; Kubernetes API: %s; mode: %s",
            host,
            port,
            kubernetes_endpoint(settings),
            _mode(app, settings),
        )
        await stop.wait()
        log.info("canary-responder shutting down (%s)", received[-1] if received else "stopped")
    finally:
        await runner.cleanup()
    log.info("canary-responder stopped")
    return EXIT_OK


def freeze_startup_objects() -> None:
    """Move everything start-up created (modules, schemas, configuration: tens of thousands of objects) out of the
    garbage collector's reach: they live as long as the process, and a full collection that walks them stops the
    event loop and the store thread for tens of milliseconds, which lands on whichever rollback is under way
    (``bench/bench_storm.py``: the longest full collection during a storm went from 62 to 32 ms)."""
    gc.collect()
    gc.freeze()


def _mode(app: web.Application, settings: Settings) -> str:
    from responder.http.runtime import RUNTIME

    services = app[RUNTIME].services
    paused = services.engine.core.paused if services is not None else None
    parts = ["dry-run (plans recorded, nothing executed)" if settings.dry_run else "acting"]
    if paused:
        parts.append(f"PAUSED {paused}")
    return ", ".join(parts)


def _on_signals(stop: asyncio.Event, received: list[str]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):

        def handler(name: str = sig.name) -> None:
            received.append(name)
            stop.set()

        loop.add_signal_handler(sig, handler)


def run(settings: Settings, build: Callable[[], web.Application]) -> int:
    """Bind, then build and run the app on an event loop of its own (uvloop's when installed)."""
    host, port = settings.listen.host, settings.listen.port
    try:
        sock = bind(host, port)
    except OSError as exc:
        log.error("%s", bind_problem(exc, host, port))
        return EXIT_CANNOT_START
    _use_uvloop()
    try:
        return asyncio.run(serve(build(), settings, sock))
    finally:
        sock.close()


def _use_uvloop() -> None:
    """uvloop's faster event loop when installed (it is a dependency on Linux); asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
