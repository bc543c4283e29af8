"""Load a YAML file into a pydantic model, with errors that name file, line, field and fix.

Used for the catalogue (kit profiles, use-cases) and for every config file a part reads.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kits.errors import ConfigError

__all__ = ["load_yaml_model", "parse_yaml_model", "settings_from"]

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: Path, model: type[M], *, error: type[ConfigError] = ConfigError) -> M:
    """Read ``path`` and validate it as ``model``.

    Raises:
        ConfigError (or ``error``): the file is missing, not YAML, or not a valid ``model``;
            the message names the file, the line, the field and what to do.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read the file ({exc.strerror}): check the path") from exc
    return parse_yaml_model(text, model, source=str(path), error=error)


def parse_yaml_model(text: str, model: type[M], *, source: str, error: type[ConfigError] = ConfigError) -> M:
    """Validate YAML ``text`` (from ``source``, for messages) as ``model``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{source}{line}: not valid YAML ({problem}): check indentation and quoting") from exc
    if not isinstance(data, dict):
        raise error(
            f"{source}: expected a mapping of fields at the top level, got "
            f"{type(data).__name__}: see the other files in the same folder for the shape"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(_explain(exc, node, model, source)) from exc


def _explain(exc: ValidationError, root: yaml.Node | None, model: type[BaseModel], source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not isinstance(p, str) or not p.startswith("function-")]
        field = ".".join(str(p) for p in loc) or "(top level)"
        node, parent = _node_at(root, loc)
        where = node or parent
        line = f" line {where.start_mark.line + 1}" if where is not None else ""
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            known = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"allowed fields: {', '.join(known)}"
            message = f"unknown field {loc[-1]!r}: {fix}"
        elif err["type"] == "missing":
            message = f"required field {loc[-1]!r} is missing: add it"
        elif isinstance(err.get("input"), dict | list):  # a whole block: the message names what
            message = f"{message.removeprefix('Value error, ')}"
        else:
            message = f"{message} (got {err.get('input')!r}): correct the value"
        lines.append(f"{source}{line}, field {field}: {message}")
    return "\n".join(lines)


def _node_at(root: yaml.Node | None, loc: list[Any]) -> tuple[yaml.Node | None, yaml.Node | None]:
    """Return the YAML node at ``loc`` (or None) and the deepest node found on the way."""
    node, last = root, root
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    nxt = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        if nxt is None:
            return None, last
        node, last = nxt, nxt
    return node, last


def _fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """Return the field names of the (sub)model at ``loc``, for "did you mean" hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _inner_model(field.annotation)
    return sorted(getattr(current, "model_fields", {}))


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def settings_from(model: type[M], env_prefix: str, what: str, **overrides: Any) -> M:
    """Build ``model`` (pydantic-settings) from ``overrides`` that are not None and the environment.

    Raises:
        ConfigError: a value is invalid; the message names the setting, its environment
            variable (``env_prefix`` + name) and the problem.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return model(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{field} ({env_prefix}{field.upper()}): {message}" if field else message)
        raise ConfigError(f"invalid {what} settings: " + "; ".join(problems)) from exc
