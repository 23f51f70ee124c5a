"""`@step`: a typed Python function whose outputs become artifacts when a pipeline runs it.

Outside a pipeline definition a step is its function: calling it calls the
function, with no run and no store, so steps are unit-tested like any code.
Inside a ``@pipeline`` function a call is recorded in the DAG instead and
returns placeholders.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from conveyor.core.graph import current_builder
from conveyor.core.typecheck import resolve_hints
from conveyor.errors import ValidationError

__all__ = ["Step", "step"]

P = ParamSpec("P")
R = TypeVar("R")


class Step(Generic[P, R]):
    """A function with the options the runner needs; create it with `step`.

    Args:
        fn: the function.
        name: the step's name (the function's name by default).
        retries: how many times a failing call is tried again.
        retry_delay: seconds to wait before each retry.
        cache: whether a result recorded earlier may be reused (see the runner).
        allow_pickle: store outputs no serializer handles as pickles (trusted code only).
        serializers: serializers for this step's outputs by type, ahead of the registry.
        outputs: names for the outputs (``output`` for one; ``output_0``… for a tuple).
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        cache: bool = True,
        allow_pickle: bool = False,
        serializers: Mapping[type, Any] | None = None,
        outputs: Sequence[str] | None = None,
    ) -> None:
        if retries < 0 or retry_delay < 0:
            raise ValidationError("retries", "retries and retry_delay must not be negative")
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "step"))
        self.retries = retries
        self.retry_delay = retry_delay
        self.cache = cache
        self.allow_pickle = allow_pickle
        self.serializers: dict[type, Any] = dict(serializers or {})
        self.signature = inspect.signature(fn)
        self.hints = resolve_hints(fn)
        self.output_types, self.multiple_outputs = _outputs_of(self.hints)
        self.output_names = _output_names(self.name, len(self.output_types), outputs)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<step {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function, or record the call if a pipeline is being defined."""
        builder = current_builder()
        if builder is None:
            return self.fn(*args, **kwargs)
        # While a pipeline is being defined the call returns placeholders typed as R,
        # so pipeline code reads (and type-checks) like the plain calls it stands for.
        return typing.cast(R, builder.add_call(self, args, kwargs))

    @functools.cached_property
    def code_hash(self) -> str:
        """A sha256 of the function's source (its bytecode and constants if there is none)."""
        try:
            text = textwrap.dedent(inspect.getsource(self.fn)).encode()
        except (OSError, TypeError):
            code = getattr(self.fn, "__code__", None)
            text = _code_bytes(code) if code is not None else repr(self.fn).encode()
        return hashlib.sha256(text).hexdigest()


def _outputs_of(hints: Mapping[str, Any]) -> tuple[tuple[Any, ...], bool]:
    """The annotated output types and whether the step returns several outputs."""
    if "return" not in hints:
        return (Any,), False
    annotation = hints["return"]
    if annotation is None or annotation is type(None):
        return (), False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and args and args[-1] is not Ellipsis:
        return tuple(args), True
    return (annotation,), False


def _output_names(step: str, count: int, names: Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        return ("output",) if count == 1 else tuple(f"output_{i}" for i in range(count))
    chosen = tuple(names)
    if len(chosen) != count or len(set(chosen)) != len(chosen):
        raise ValidationError(
            f"step {step!r} outputs",
            f"give {count} distinct name(s), one per annotated output; got {list(chosen)}",
        )
    for out in chosen:
        if not out.isidentifier():
            raise ValidationError(f"step {step!r} outputs", f"{out!r} is not an identifier")
    return chosen


def _code_bytes(code: types.CodeType) -> bytes:
    # Nested code objects' reprs carry memory addresses; hash their bytecode instead.
    parts = [code.co_code]
    for const in code.co_consts:
        parts.append(
            _code_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode()
        )
    return b"\0".join(parts)


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    cache: bool = True,
    allow_pickle: bool = False,
    serializers: Mapping[type, Any] | None = None,
    outputs: Sequence[str] | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    cache: bool = True,
    allow_pickle: bool = False,
    serializers: Mapping[type, Any] | None = None,
    outputs: Sequence[str] | None = None,
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Make a function a pipeline step: ``@step`` or ``@step(retries=2, cache=False)``.

    Args:
        fn: the function (when used as ``@step`` without arguments).
        name: the step's name (the function's name by default).
        retries: how many times a failing call is tried again.
        retry_delay: seconds to wait before each retry.
        cache: whether a result recorded earlier may be reused.
        allow_pickle: store outputs no serializer handles as pickles (trusted code only).
        serializers: serializers for this step's outputs by type, ahead of the registry.
        outputs: names for the outputs, one per annotated output.

    Returns:
        The step, or a decorator that makes one.
    """
    options: dict[str, Any] = {
        "name": name,
        "retries": retries,
        "retry_delay": retry_delay,
        "cache": cache,
        "allow_pickle": allow_pickle,
        "serializers": serializers,
        "outputs": outputs,
    }
    if fn is not None:
        return Step(fn, **options)

    def decorate(f: Callable[P, R]) -> Step[P, R]:
        return Step(f, **options)

    return decorate
