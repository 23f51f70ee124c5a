"""The run of the step executing in this thread, for code inside a step that logs or registers."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from conveyor.tracking.tracker import ActiveRun

__all__ = ["current_step_run", "step_run"]

_current: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar(
    "conveyor_step_run", default=None
)


def current_step_run() -> ActiveRun | None:
    """The child run of the step running in this thread (None outside a step)."""
    return _current.get()


@contextmanager
def step_run(run: ActiveRun) -> Iterator[ActiveRun]:
    """Make ``run`` the current step run while the step's function executes."""
    token = _current.set(run)
    try:
        yield run
    finally:
        _current.reset(token)
