"""The engine: decides on accepted alerts (the pure core), records every decision and step through the store
port, carries rollbacks out per target (lanes, executor, steps), and serves the operators' pause, replay and
restore. It never sees a database type, a Kubernetes client or an HTTP request."""

from responder.engine.engine import Clock, Engine, EngineOptions, Saturated, utc_now
from responder.engine.operations import RestoreResult, restore_point

__all__ = ["Clock", "Engine", "EngineOptions", "RestoreResult", "Saturated", "restore_point", "utc_now"]
