"""Loading an operator-written YAML file into a strict pydantic model.

Owns the error wording shared by the policy file and the egress registry: every problem is a
``ConfigError`` that starts with the source (a path, or "embedded default ...") and names the
field and the reason. It knows neither model; ``webhook.config.policy`` and
``webhook.egress.registry`` do.
"""

from __future__ import annotations

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
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from exc


def read_source(path: Path | None, *, default_resource: str, what: str) -> tuple[str, str]:
    """The text to parse and its source name: the file, or the packaged default for None."""
    if path is None:
        text = resources.files("webhook").joinpath(default_resource).read_text("utf-8")
        return text, f"embedded default {what}"
    try:
        return path.read_text("utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} file: {exc}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)
