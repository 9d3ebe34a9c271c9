"""canary-responder: pull a bad canary out of production on the Alertmanager notification itself."""

__version__ = "0.1.0"
