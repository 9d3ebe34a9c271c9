"""The one configuration file: a YAML document validated by pydantic into a typed :class:`Settings`.

Secrets are never required inline: each is a :class:`SecretRef` naming a file (a mounted Kubernetes Secret) or
an environment variable, resolved once by :func:`load_settings`. A bad file raises :class:`ConfigError` whose
message names each offending field path (``targets.0.deployment: ...``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from responder.config.base import ConfigError, Duration
from responder.config.delivery import GitopsSettings
from responder.config.secrets import Secrets
from responder.config.settings import KubernetesSettings, Settings


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"{path}: {error['msg']}")
    return "\n".join(lines)


def parse_settings(document: Any) -> Settings:
    if not isinstance(document, dict):
        raise ConfigError("the configuration must be a YAML mapping")
    try:
        return Settings.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def format_duration(value: timedelta) -> str:
    """Display a duration in the one-unit form the parser reads back: 90s, 90m, 25h, 250ms."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    for unit, size_ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if total_ms and total_ms % size_ms == 0:
            return f"{total_ms // size_ms}{unit}"
    return f"{total_ms}ms"


def read_settings(path: Path) -> Settings:
    """Read and validate a configuration file without resolving its secrets."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_settings(document)


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> tuple[Settings, Secrets]:
    """Read, validate and resolve a configuration file; raise ConfigError naming what is wrong."""
    settings = read_settings(path)
    return settings, Secrets(settings, os.environ if environ is None else environ)


__all__ = [
    "ConfigError",
    "Duration",
    "GitopsSettings",
    "KubernetesSettings",
    "Secrets",
    "Settings",
    "format_duration",
    "format_validation_error",
    "load_settings",
    "parse_settings",
    "read_settings",
]
