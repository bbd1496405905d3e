"""Loading an operator-written YAML file into a strict pydantic model.

Owns the error wording shared by the policy file and the egress registry: every problem is a
``ConfigError`` that starts with the source (a path, or "embedded default ...") and names the
field and the reason; an unknown field also names the nearest known one (``did you mean
'ports'?``), found by walking the model's own field types along the error's location. It
knows neither model; ``webhook.config.policy`` and ``webhook.egress.registry`` do.
"""

from __future__ import annotations

import difflib
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from webhook.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], text: str, *, source: str, what: str) -> M:
    """Parse YAML text into ``model``; an empty document means every default."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the {what} must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc, model)}") from exc


def read_source(path: Path | None, *, default_resource: str, what: str) -> tuple[str, str]:
    """The text to parse and its source name: the file, or the packaged default for None."""
    if path is None:
        text = resources.files("webhook").joinpath(default_resource).read_text("utf-8")
        return text, f"embedded default {what}"
    try:
        return path.read_text("utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} file: {exc}") from exc


def describe_validation_error(exc: ValidationError,
                              model: type[BaseModel] | None = None) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problem = f"{where}: {error['msg']}"
        if error["type"] == "extra_forbidden" and model is not None and error["loc"]:
            suggestion = nearest_field(model, error["loc"])
            if suggestion:
                problem += f" (did you mean {suggestion!r}?)"
        problems.append(problem)
    return "; ".join(problems)


def nearest_field(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    """The known field closest to the unknown last part of ``loc``, if one is close enough."""
    parent = _model_at(model, loc[:-1])
    unknown = loc[-1]
    if parent is None or not isinstance(unknown, str):
        return None
    known = [info.alias or name for name, info in parent.model_fields.items()]
    matches = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
    if not matches:
        lowered = {name.lower(): name for name in known}
        matches = [lowered[unknown.lower()]] if unknown.lower() in lowered else []
    return matches[0] if matches else None


def _model_at(model: type[BaseModel], path: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model a location points into: field names descend, list indexes are skipped."""
    current: type[BaseModel] = model
    for part in path:
        if isinstance(part, int):
            continue
        fields = {info.alias or name: info for name, info in current.model_fields.items()}
        info = fields.get(part)
        if info is None:
            # A union member's tag (pydantic puts the type's name in the location): stay put.
            continue
        found = _models_in(info.annotation)
        if not found:
            return None
        current = found[0]
    return current


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (``X``, ``X | None``, ``tuple[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return []
    return [found for arg in typing.get_args(annotation) for found in _models_in(arg)]
