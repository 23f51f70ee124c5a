"""`@pipeline`: a function whose step calls define a DAG, traced with concrete parameter values.

`Pipeline.build` checks the parameters (unknown, missing, wrong type), runs
the function once with step calls recorded instead of executed, and checks
the resulting graph. Nothing runs and nothing is stored.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any, overload

from conveyor.core.graph import Graph, GraphBuilder
from conveyor.core.typecheck import describe, resolve_hints, value_fits
from conveyor.errors import PipelineDefinitionError

__all__ = ["Pipeline", "parse_text", "pipeline"]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


class Pipeline:
    """A pipeline definition; create it with `pipeline`.

    Calling it calls the function: its steps then run as plain functions,
    untracked. ``run_pipeline(p, params=…)`` runs it as tracked, cached runs.

    Args:
        fn: the function that calls steps.
        name: the pipeline's name (the function's name by default).
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "pipeline"))
        self.signature = inspect.signature(fn)
        self.hints = resolve_hints(fn)
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise PipelineDefinitionError(
                    None, p.name, f"pipeline {self.name!r} parameters must be named (no */**)"
                )

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function: its steps run as plain functions, with no run and no store."""
        return self.fn(*args, **kwargs)

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        """The pipeline's parameters by name."""
        return dict(self.signature.parameters)

    def annotation(self, name: str) -> Any:
        """The annotation of parameter ``name``, falling back to its default's type."""
        if name in self.hints:
            return self.hints[name]
        default = self.signature.parameters[name].default
        if default is inspect.Parameter.empty or default is None:
            return Any
        return type(default)

    def resolve_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The value of every parameter: ``params`` over the defaults, checked.

        Raises:
            PipelineDefinitionError: a parameter is unknown, missing or of the wrong type.
        """
        given = dict(params or {})
        declared = self.signature.parameters
        for key in given:
            if key not in declared:
                known = ", ".join(declared) or "none"
                raise PipelineDefinitionError(
                    None, key, f"pipeline {self.name!r} has no such parameter (it has: {known})"
                )
        values: dict[str, Any] = {}
        for key, p in declared.items():
            if key in given:
                values[key] = given[key]
            elif p.default is not inspect.Parameter.empty:
                values[key] = p.default
            else:
                raise PipelineDefinitionError(
                    None, key, f"pipeline {self.name!r} needs a value for this parameter"
                )
            if key in given and not value_fits(values[key], self.annotation(key)):
                raise PipelineDefinitionError(
                    None,
                    key,
                    f"pipeline {self.name!r} expects {describe(self.annotation(key))}, "
                    f"got {type(values[key]).__name__} {values[key]!r}",
                )
        return values

    def parse_params(self, texts: Mapping[str, str]) -> dict[str, Any]:
        """Turn ``name -> text`` (from a command line) into values, by each annotation.

        Raises:
            PipelineDefinitionError: a name is unknown or a text does not parse.
        """
        values = {}
        for key, text in texts.items():
            if key not in self.signature.parameters:
                self.resolve_params({key: text})  # raises, listing the parameters
            try:
                values[key] = parse_text(text, self.annotation(key))
            except ValueError as exc:
                raise PipelineDefinitionError(
                    None, key, f"cannot read {text!r} as {describe(self.annotation(key))}: {exc}"
                ) from exc
        return values

    def build(self, params: Mapping[str, Any] | None = None) -> Graph:
        """Trace the function with the resolved parameters into a checked `Graph`.

        Raises:
            PipelineDefinitionError: a parameter or the graph breaks a rule.
        """
        values = self.resolve_params(params)
        with GraphBuilder() as builder:
            self.fn(**values)
        graph = builder.graph
        if not graph.nodes:
            raise PipelineDefinitionError(None, None, f"pipeline {self.name!r} calls no step")
        graph.validate()
        return graph


def parse_text(text: str, annotation: Any) -> Any:
    """Read a command-line value as ``annotation``: int, float, bool, str, paths, JSON, Optional.

    Raises:
        ValueError: the text does not read as that type.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if args and type(None) in args:
        if text.strip().lower() in _NONE:
            return None
        rest = [a for a in args if a is not type(None)]
        return parse_text(text, rest[0] if len(rest) == 1 else Any)
    cls = origin or annotation
    if cls is bool:
        return _parse_bool(text)
    if cls in (int, float, str):
        return cls(text)
    if isinstance(cls, type) and issubclass(cls, PurePath):
        return Path(text)
    if cls in (list, dict):
        value = json.loads(text)
        if not isinstance(value, cls):
            raise ValueError(f"expected a JSON {cls.__name__}")
        return value
    return _parse_any(text)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _parse_any(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@overload
def pipeline(fn: Callable[..., Any], /) -> Pipeline: ...


@overload
def pipeline(*, name: str | None = None) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """Make a function a pipeline: ``@pipeline`` or ``@pipeline(name="training")``.

    Args:
        fn: the function (when used without arguments).
        name: the pipeline's name (the function's name by default).

    Returns:
        The pipeline, or a decorator that makes one.
    """
    if fn is not None:
        return Pipeline(fn, name=name)
    return lambda f: Pipeline(f, name=name)
