"""The type rules a pipeline is checked with before it runs: simple, predictable, never guessing.

Only what can be decided cheaply and surely is checked: ``int``, ``float``,
``str``, ``bool``, paths, ``list``/``dict`` (with simple element types),
``Optional``/unions, ``Literal`` and plain classes. Anything else — an
unresolvable annotation, a protocol, a type variable, ``Any`` — passes.
"""

from __future__ import annotations

import inspect
import os
import types
import typing
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

__all__ = ["annotation_fits", "describe", "resolve_hints", "value_fits"]

_UNKNOWN = (inspect.Parameter.empty, Any, object)
_UNION_TYPES: tuple[Any, ...] = (typing.Union, types.UnionType)
_MAX_CHECKED_ITEMS = 1000  # a literal list is checked item by item, up to this many


def resolve_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The annotations of ``fn`` (parameters and ``return``), evaluated where possible.

    An annotation that cannot be evaluated (a name imported only for type
    checking) is left out, which makes it unchecked.
    """
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: S110 - fall back to evaluating one annotation at a time
        pass
    hints: dict[str, Any] = {}
    scope = getattr(fn, "__globals__", {})
    for name, raw in getattr(fn, "__annotations__", {}).items():
        try:
            hints[name] = eval(raw, scope) if isinstance(raw, str) else raw  # noqa: S307
        except Exception:  # noqa: S112 - unknown annotations are not checked
            continue
    return hints


def _is_unknown(annotation: Any) -> bool:
    return (
        any(annotation is u for u in _UNKNOWN)
        or isinstance(annotation, (str, typing.TypeVar, typing.ForwardRef))
        or annotation is typing.ClassVar
    )


def describe(annotation: Any) -> str:
    """A short human spelling of an annotation: ``int``, ``list[str]``, ``int | None``."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return str(annotation).replace("typing.", "")


def value_fits(value: Any, annotation: Any) -> bool:
    """Whether a literal ``value`` may be passed where ``annotation`` is expected."""
    if _is_unknown(annotation):
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in _UNION_TYPES:
        return any(value_fits(value, member) for member in args)
    if origin is typing.Literal:
        return value in args
    if annotation is None or annotation is type(None):
        return value is None
    return _value_fits_class(value, origin or annotation, args)


def _value_fits_class(value: Any, cls: Any, args: tuple[Any, ...]) -> bool:
    if cls is bool:
        return isinstance(value, bool)
    if cls is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if cls is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(cls, type) and issubclass(cls, PurePath):
        return isinstance(value, (str, os.PathLike))
    if cls is list and args:
        return isinstance(value, list) and all(
            value_fits(item, args[0]) for item in value[:_MAX_CHECKED_ITEMS]
        )
    if cls is dict and len(args) == 2:
        items = list(value.items())[:_MAX_CHECKED_ITEMS] if isinstance(value, dict) else None
        return items is not None and all(
            value_fits(k, args[0]) and value_fits(v, args[1]) for k, v in items
        )
    return _isinstance(value, cls)


def _isinstance(value: Any, cls: Any) -> bool:
    try:
        return isinstance(value, cls)
    except TypeError:  # a non-runtime protocol, a subscripted generic: not decidable here
        return True


def annotation_fits(produced: Any, expected: Any) -> bool:
    """Whether an output annotated ``produced`` may feed a parameter annotated ``expected``.

    Every member of a produced union must fit (``int | None`` does not fit ``int``);
    ``int`` fits ``float``, and ``str`` fits a path, as values do.
    """
    if _is_unknown(produced) or _is_unknown(expected):
        return True
    p_origin, e_origin = typing.get_origin(produced), typing.get_origin(expected)
    if p_origin in _UNION_TYPES:
        return all(annotation_fits(m, expected) for m in typing.get_args(produced))
    if e_origin in _UNION_TYPES:
        return any(annotation_fits(produced, m) for m in typing.get_args(expected))
    if typing.Literal in (p_origin, e_origin):
        return True
    return _class_fits(_class_of(produced, p_origin), _class_of(expected, e_origin))


def _class_of(annotation: Any, origin: Any) -> Any:
    if annotation is None:
        return type(None)
    return origin or annotation


def _class_fits(produced: Any, expected: Any) -> bool:
    if not (isinstance(produced, type) and isinstance(expected, type)):
        return True
    if expected is float and produced is int:
        return True
    if issubclass(expected, PurePath) and (produced is str or issubclass(produced, PurePath)):
        return True
    try:
        return issubclass(produced, expected)
    except TypeError:
        return True
