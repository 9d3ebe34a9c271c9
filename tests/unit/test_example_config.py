"""Issue 14: examples/config.yaml says it lists every setting. Every field of the settings model, at every depth,
must appear in it (as a key, set or commented out), so a new setting cannot be added without documenting it."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from responder.config import Settings, read_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"


def models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple, dict, typing.Literal) or origin is not None:
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]
    return []


def field_paths(model: type[BaseModel], prefix: str = "", seen: frozenset[type] = frozenset()) -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        paths.append(prefix + key)
        for inner in models_in(info.annotation):
            if inner not in seen:
                paths += field_paths(inner, f"{prefix}{key}.", seen | {model})
    return paths


def documented(key: str, text: str) -> bool:
    """``key:`` as a block key (``key: ...``, ``- key: ...``, commented or not) or inside a flow mapping."""
    return bool(re.search(rf"(^|[\s{{,#-]){re.escape(key)}:(\s|$)", text, flags=re.M))


def test_every_settings_field_is_in_the_example() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = [path for path in field_paths(Settings) if not documented(path.rsplit(".", 1)[-1], text)]
    assert not missing, f"examples/config.yaml does not document: {', '.join(missing)}"


def test_the_field_walk_sees_nested_settings() -> None:
    paths = field_paths(Settings)
    assert "leader_election" in paths and "auth.read_token" in paths and "restore.ready_timeout" in paths


def test_the_example_is_valid() -> None:
    assert read_settings(EXAMPLE).targets
