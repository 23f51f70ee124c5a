"""The executor seam: ``submit(fn, *args, **kwargs) -> concurrent.futures.Future``."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["Executor"]

T = TypeVar("T")


@runtime_checkable
class Executor(Protocol):
    """Runs callables and hands back futures, like `concurrent.futures.Executor`.

    Attributes:
        in_process: whether submitted calls share this process's memory, so step
            outputs can be handed over as objects (otherwise they go through the
            artifact store).
    """

    in_process: bool

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` and return its future."""
        ...

    def shutdown(self, wait: bool = True) -> None:
        """Release workers once submitted calls are done (if ``wait``)."""
        ...
