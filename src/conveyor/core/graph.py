"""The DAG of step invocations a pipeline definition traces, and its checks.

Inside a `GraphBuilder` (``with builder:``), calling a step records a `Node`
and returns `OutputRef` placeholders instead of running it. Arguments that
are placeholders become edges; all others are literals, checked against the
step's annotations. Every rule is checked before anything runs, and every
error names the step and the argument.
"""

from __future__ import annotations

import contextvars
import inspect
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from conveyor.core.typecheck import annotation_fits, describe, value_fits
from conveyor.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from conveyor.core.step import Step

__all__ = ["Const", "Graph", "GraphBuilder", "Node", "OutputRef", "current_builder"]

_building: contextvars.ContextVar[GraphBuilder | None] = contextvars.ContextVar(
    "conveyor_graph_builder", default=None
)
_build_ids = itertools.count(1)
_CONTAINERS = (list, tuple, set, frozenset, dict)


def current_builder() -> GraphBuilder | None:
    """The builder tracing step calls in this context, if a pipeline is being defined."""
    return _building.get()


@dataclass(frozen=True, slots=True)
class OutputRef:
    """A placeholder for one output of a step invocation, while a pipeline is defined."""

    node: str
    output: str
    build_id: int
    annotation: Any = field(default=Any, compare=False)

    def __repr__(self) -> str:
        return f"<output {self.output!r} of step {self.node!r}>"

    def __bool__(self) -> bool:
        raise PipelineDefinitionError(
            self.node,
            None,
            f"output {self.output!r} has no value while the pipeline is being defined; "
            "branch on pipeline parameters, or inside a step",
        )

    def __iter__(self) -> Iterator[Any]:
        raise PipelineDefinitionError(
            self.node,
            None,
            "has one output and cannot be unpacked; annotate the return as "
            "tuple[...] to give it several outputs",
        )


@dataclass(frozen=True, slots=True)
class Const:
    """A literal argument of a step invocation (a pipeline parameter's value or a constant)."""

    value: Any


Input = OutputRef | Const


@dataclass(frozen=True)
class Node:
    """One invocation of a step: its unique name and its bound arguments."""

    name: str
    step: Step[..., Any]
    inputs: Mapping[str, Input]

    @property
    def upstream(self) -> set[str]:
        """The names of the nodes whose outputs this one consumes."""
        return {i.node for i in self.inputs.values() if isinstance(i, OutputRef)}

    @property
    def literals(self) -> dict[str, Any]:
        """The literal arguments by parameter name."""
        return {k: v.value for k, v in self.inputs.items() if isinstance(v, Const)}

    @property
    def refs(self) -> dict[str, OutputRef]:
        """The upstream outputs consumed, by parameter name."""
        return {k: v for k, v in self.inputs.items() if isinstance(v, OutputRef)}


class Graph:
    """Step invocations by name, in the order they were defined."""

    def __init__(self, nodes: Mapping[str, Node] | None = None) -> None:
        self.nodes: dict[str, Node] = dict(nodes or {})

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def downstream(self, name: str) -> set[str]:
        """The names of the nodes that consume an output of ``name``."""
        return {n.name for n in self.nodes.values() if name in n.upstream}

    def terminal(self) -> list[str]:
        """The nodes whose outputs no other node consumes, in definition order."""
        used = {u for n in self.nodes.values() for u in n.upstream}
        return [name for name in self.nodes if name not in used]

    def topological_order(self) -> list[str]:
        """Every node after all of its upstream nodes (ties in definition order).

        Raises:
            PipelineDefinitionError: the graph has a cycle (naming a step on it).
        """
        waiting = {name: set(node.upstream) for name, node in self.nodes.items()}
        order: list[str] = []
        ready = [name for name, deps in waiting.items() if not deps]
        while ready:
            name = ready.pop(0)
            order.append(name)
            for other, deps in waiting.items():
                if name in deps:
                    deps.discard(name)
                    if not deps and other not in order and other not in ready:
                        ready.append(other)
        stuck = [name for name in self.nodes if name not in order]
        if stuck:
            raise PipelineDefinitionError(
                stuck[0], None, f"is part of a cycle: {' -> '.join(stuck)} depend on each other"
            )
        return order

    def validate(self) -> None:
        """Check every edge (known node and output, fitting types) and that there is no cycle.

        Raises:
            PipelineDefinitionError: the first rule broken, naming the step and the argument.
        """
        for node in self.nodes.values():
            for param, ref in node.refs.items():
                self._check_edge(node, param, ref)
        self.topological_order()

    def _check_edge(self, node: Node, param: str, ref: OutputRef) -> None:
        source = self.nodes.get(ref.node)
        if source is None:
            raise PipelineDefinitionError(
                node.name, param, f"uses an output of step {ref.node!r}, which is not defined"
            )
        if ref.output not in source.step.output_names:
            raise PipelineDefinitionError(
                node.name, param, f"step {ref.node!r} has no output {ref.output!r}"
            )
        produced = source.step.output_types[source.step.output_names.index(ref.output)]
        expected = node.step.hints.get(param, inspect.Parameter.empty)
        if not annotation_fits(produced, expected):
            raise PipelineDefinitionError(
                node.name,
                param,
                f"expects {describe(expected)} but step {ref.node!r} output "
                f"{ref.output!r} is annotated {describe(produced)}",
            )


class GraphBuilder:
    """Records step calls into a `Graph` while it is the active builder (``with builder:``)."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.build_id = next(_build_ids)
        self._token: contextvars.Token[GraphBuilder | None] | None = None

    def __enter__(self) -> GraphBuilder:
        self._token = _building.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _building.reset(self._token)
            self._token = None

    def add_call(
        self, step: Step[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> OutputRef | tuple[OutputRef, ...] | None:
        """Record one call of ``step`` and return its placeholders (a tuple if several)."""
        name = self._unique_name(step.name)
        bound = _bind(name, step, args, kwargs)
        inputs = {param: self._input(name, step, param, value) for param, value in bound.items()}
        self.graph.nodes[name] = Node(name, step, inputs)
        refs = tuple(
            OutputRef(name, out, self.build_id, typ)
            for out, typ in zip(step.output_names, step.output_types, strict=True)
        )
        if not refs:
            return None
        return refs if step.multiple_outputs else refs[0]

    def _unique_name(self, base: str) -> str:
        if base not in self.graph.nodes:
            return base
        return next(f"{base}_{i}" for i in itertools.count(2) if f"{base}_{i}" not in self.graph)

    def _input(self, node: str, step: Step[..., Any], param: str, value: Any) -> Input:
        if isinstance(value, OutputRef):
            if value.build_id != self.build_id or value.node not in self.graph:
                raise PipelineDefinitionError(
                    node,
                    param,
                    f"uses output {value.output!r} of step {value.node!r} before it exists "
                    "in this pipeline (a placeholder from another pipeline definition)",
                )
            return value
        _refuse_nested(node, param, value)
        expected = step.hints.get(param, inspect.Parameter.empty)
        if not value_fits(value, expected):
            raise PipelineDefinitionError(
                node,
                param,
                f"expects {describe(expected)}, got {type(value).__name__} {_short(value)}",
            )
        return Const(value)


def _bind(name: str, step: Step[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    params = step.signature.parameters
    for p in params.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise PipelineDefinitionError(
                name, p.name, "steps in a pipeline take named parameters, not *args/**kwargs"
            )
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        known = ", ".join(params) or "none"
        raise PipelineDefinitionError(
            name, unknown[0], f"is not a parameter of the step (parameters: {known})"
        )
    if len(args) > len(params):
        raise PipelineDefinitionError(
            name, None, f"takes {len(params)} argument(s) but {len(args)} were given"
        )
    try:
        bound = step.signature.bind(*args, **kwargs)
    except TypeError as exc:
        missing = [p for p in list(params)[len(args) :] if p not in kwargs]
        required = [p for p in missing if params[p].default is inspect.Parameter.empty]
        raise PipelineDefinitionError(
            name, required[0] if required else None, f"is required and missing ({exc})"
        ) from exc
    bound.apply_defaults()
    return bound.arguments


def _refuse_nested(node: str, param: str, value: Any) -> None:
    if isinstance(value, _CONTAINERS) and any(isinstance(v, OutputRef) for v in _flatten(value)):
        raise PipelineDefinitionError(
            node,
            param,
            "an output placeholder inside a container is not supported; "
            "pass each output as its own argument",
        )


def _flatten(value: Any) -> Iterator[Any]:
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        if isinstance(item, _CONTAINERS):
            yield from _flatten(item)
        else:
            yield item


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
