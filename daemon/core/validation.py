"""Turn pydantic validation errors into positioned, human `Problem`s."""
from __future__ import annotations

import difflib
from typing import Any, Iterable, get_args

from pydantic import BaseModel, ValidationError

from daemon.errors import Problem
from daemon.core.yamldoc import YamlDoc

def is_int(value: Any) -> bool:
    """A whole number as YAML or JSON gives it (bool is an int to Python, not to a person)."""
    return isinstance(value, int) and not isinstance(value, bool)


_TYPE_NAMES = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "float_type": "a number",
    "literal_error": None,
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, float):
        return f"{value!r} (a decimal)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return repr(value)


# pydantic's last loc part for an error in a mapping's key (not its value)
KEY_LOC = "[key]"


def dotted(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc if part != KEY_LOC) or "(document)"


def message_for(error: dict, allowed_fields: Iterable[str] = ()) -> str:
    """One sentence for one pydantic error dict, naming the field and the fix."""
    loc, kind = error["loc"], error["type"]
    name = dotted(loc)
    if kind == "missing":
        return f"missing required field {name!r}"
    if kind == "extra_forbidden":
        field = str(loc[-1])
        hint = difflib.get_close_matches(field, list(allowed_fields), n=1)
        allowed = ", ".join(sorted(allowed_fields))
        suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; allowed here: {allowed}"
        return f"unknown field {name!r}{suggestion}"
    if kind in _TYPE_NAMES and _TYPE_NAMES[kind]:
        return f"{name} must be {_TYPE_NAMES[kind]}, got {_describe(error.get('input'))}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{name} {error['msg'].lower()}, got {_describe(error.get('input'))}"
    msg = error["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return f"{name}: {msg}"


def _allowed_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names allowed in the mapping that contains `loc` (for did-you-mean)."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_of(field.annotation)
    return list(getattr(current, "model_fields", {}).keys())


def _model_of(annotation: Any) -> Any:
    """The model an optional field holds (`AutoscalingPolicy | None` -> AutoscalingPolicy)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((arm for arm in get_args(annotation) if isinstance(arm, type) and issubclass(arm, BaseModel)),
                annotation)


def problems_from(exc: ValidationError, doc: YamlDoc, path: str, model: type[BaseModel]) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        prefer_key = error["type"] == "extra_forbidden"
        if loc and loc[-1] == KEY_LOC:  # the key itself is wrong: point at it
            loc, prefer_key = loc[:-1], True
        if error["type"] == "missing":
            pos = doc.position(loc[:-1])  # the mapping that lacks the field
        else:
            pos = doc.position(loc, prefer_key=prefer_key)
        problems.append(Problem(path, pos.line, pos.col, message_for(error, _allowed_fields(model, loc))))
    return problems
