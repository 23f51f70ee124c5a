"""`LocalExecutor`: steps on a thread pool in this process; independent branches overlap."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from conveyor.errors import StateError, ValidationError

__all__ = ["LocalExecutor"]

T = TypeVar("T")


class LocalExecutor:
    """A thread pool; outputs pass between steps as Python objects.

    Threads suit steps that wait (I/O) or run native code that releases the GIL
    (numpy, pandas, pyarrow, scikit-learn); pure-Python steps take turns.

    Args:
        max_workers: threads at most (default: CPU count + 4, at most 32); the pool
            starts on the first `submit`.
    """

    in_process = True

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValidationError("max_workers", "must be at least 1")
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"LocalExecutor(max_workers={self.max_workers})"

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a worker thread.

        Raises:
            StateError: the executor was shut down.
        """
        with self._lock:
            if self._closed:
                raise StateError("this LocalExecutor was shut down; create a new one")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="conveyor-step"
                )
            pool = self._pool
        return pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait``, return once running calls are done."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()
