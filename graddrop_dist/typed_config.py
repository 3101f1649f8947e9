"""Typed, validated-at-the-boundary configs (torchtitan style, with strict construction).

`@typed_config` turns a class into a frozen, keyword-only dataclass whose constructor
rejects unknown fields and values of the wrong type with a one-line ValueError naming the
field and what it allows, before the class's own `__post_init__` checks ranges. Supported
annotations: bool, int, float, str, Literal[...], X | None, tuple[str, ...].
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal

_MISSING = object()


def did_you_mean(word: Any, choices) -> str:
    """' (did you mean 'x'?)' for the nearest choice to a misspelt key or value, or ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(str(choice) for choice in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(annotation))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(annotation)[0])}"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _choices(annotation: Any) -> list:
    """The Literal values an annotation allows (inside `X | None` too)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return list(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return [c for arg in typing.get_args(annotation) for c in _choices(arg)]
    return []


def _coerce(value: Any, annotation: Any) -> Any:
    """Return the value in the annotated type, or _MISSING when it does not fit."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value if value in typing.get_args(annotation) and not isinstance(value, bool) \
            else _MISSING
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            coerced = _coerce(value, arg)
            if coerced is not _MISSING:
                return coerced
        return _MISSING
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return _MISSING
        item_type = typing.get_args(annotation)[0]
        items = tuple(_coerce(item, item_type) for item in value)
        return _MISSING if _MISSING in items else items
    if annotation is type(None):
        return None if value is None else _MISSING
    if annotation is bool:
        return value if isinstance(value, bool) else _MISSING
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-5 (no dot) as a string
            try:
                return float(value) if value.strip().lower() not in ("nan", "inf", "-inf",
                                                                      "+inf") else _MISSING
            except ValueError:
                return _MISSING
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _MISSING
    if annotation is str:
        return value if isinstance(value, str) else _MISSING
    raise TypeError(f"typed_config does not support the annotation {annotation!r}")


def typed_config(cls):
    cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    dataclass_init = cls.__init__
    section = getattr(cls, "SECTION", cls.__name__)

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise ValueError(f"{section}: unknown field {unknown[0]!r}"
                             f"{did_you_mean(unknown[0], names)}; allowed fields: "
                             f"{', '.join(names)}")
        for name, value in kwargs.items():
            coerced = _coerce(value, hints[name])
            if coerced is _MISSING:
                raise ValueError(f"{section}.{name}: expected {_describe(hints[name])}, "
                                 f"got {value!r}{did_you_mean(value, _choices(hints[name]))}")
            kwargs[name] = coerced
        dataclass_init(self, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in ((n, getattr(self, n)) for n in names)}

    def replace(self, **changes):
        return cls(**{**self.to_dict(), **changes})

    cls.__init__ = __init__
    cls.to_dict = to_dict
    cls.replace = replace
    cls.from_dict = classmethod(lambda klass, data: klass(**dict(data or {})))
    return cls
