"""Adapters: the implementations of :mod:`responder.ports` over real I/O libraries (Kubernetes, SQLite, Slack).

Each adapter is the only place its library is imported, and it translates that library's exceptions into the
project's own errors at the boundary.
"""
