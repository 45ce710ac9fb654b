"""Dataclasses to JSON-ready values and back, field by field, for state snapshots.

Generic on purpose: a field added to :class:`~alarms.points.AlarmPoint` (or
an activation, a hazard) is carried by the compaction snapshot without
anyone remembering to add it here. Decoding follows the dataclass's type
hints; a field the snapshot lacks (written before the field existed) takes
its default, and a field the class no longer has is dropped.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from enum import Enum
from functools import cache
from typing import Any, TypeVar

__all__ = ["decode", "encode"]

T = TypeVar("T")


def encode(value: Any) -> Any:
    """A JSON-ready copy: dataclasses become dicts of their fields, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    return value


_PLAIN = (int, float, str, bool, type(None))


@cache
def _fields(cls: Any) -> tuple[tuple[str, Any, bool], ...]:
    """(name, converter or None when the JSON value is used as it is, required) per field."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (f.name, _converter(hints[f.name]),
         f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls))


def decode(cls: type[T], data: Mapping[str, Any]) -> T:
    """The dataclass ``cls`` built from ``encode``'s dict."""
    kwargs: dict[str, Any] = {}
    for name, convert, required in _fields(typing.cast(Any, cls)):
        if name in data:
            value = data[name]
            kwargs[name] = value if convert is None or value is None else convert(value)
        elif required:
            raise ValueError(f"{cls.__name__}: field {name!r} is missing from the saved "
                             "state and has no default")
    return cls(**kwargs)


def _converter(hint: Any) -> Any:
    """A function from the JSON value to the field's value, or None if they are the same."""
    if hint is Any or hint in _PLAIN:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        arms = [a for a in args if a is not type(None)]
        return _converter(arms[0]) if len(arms) == 1 else None
    if origin is typing.Literal:
        return None
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter(args[0]) or _same
            return lambda v: tuple(item(x) for x in v)
        items = [_converter(a) or _same for a in args]
        return lambda v: tuple(f(x) for f, x in zip(items, v, strict=True))
    if origin is list:
        item = _converter(args[0]) if args else None
        return list if item is None else (lambda v: [item(x) for x in v])
    if origin in (dict, Mapping):
        key_int = bool(args) and args[0] is int
        val = (_converter(args[1]) if args else None) or _same
        return lambda v: {(int(k) if key_int else k): val(x) for k, x in v.items()}
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint):
            return lambda v: decode(hint, v)
        if issubclass(hint, Enum):
            return hint
    return None


def _same(value: Any) -> Any:
    return value
