"""The pieces every settings model uses: durations as Prometheus writes them, the error type, the base model."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, model_validator

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")  # fullmatch: "$" would also match before a newline
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_DURATION_S = 366 * 86400  # a year: anything longer is a typo, and would overflow date arithmetic


def _parse_duration(value: Any) -> Any:
    """Accept ``90``, ``"90s"``, ``"2m"``, ``"1h"`` (Prometheus style, one unit), between 0 and a year."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration {value!r}: use a number of seconds or e.g. 30s, 2m, 1h")
    if isinstance(value, str):
        found = _DURATION.fullmatch(value.strip())
        if not found:
            raise ValueError(f"invalid duration {value!r}: use a number of seconds or e.g. 30s, 2m, 1h")
        seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    else:
        seconds = float(value)
    if not 0 <= seconds <= _MAX_DURATION_S:  # also rejects NaN and infinities
        raise ValueError(f"duration {value!r} is out of range (0 to 366d)")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """Where a secret lives: exactly one of ``file`` or ``env``."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' or 'env' (secrets are never written inline)")
        return self

    def describe(self) -> str:
        return f"file {self.file}" if self.file is not None else f"env ${self.env}"

    def resolve(self, environ: Mapping[str, str]) -> SecretStr:
        if self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {self.file}: {exc.strerror}") from exc
        else:
            assert self.env is not None
            value = environ.get(self.env, "").strip()
        if not value:
            raise ConfigError(f"secret from {self.describe()} is empty or missing")
        return SecretStr(value)
