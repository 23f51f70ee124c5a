"""What a pipeline run gives back: the pipeline's status and each step's result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.core.entities import RunStatus
from conveyor.runtime.values import StoredOutput, Value

__all__ = ["PipelineResult", "StepEvent", "StepResult"]


@dataclass(frozen=True)
class StepResult:
    """How one step invocation ended.

    Attributes:
        name: the invocation's name (``fit``, ``fit_2``…).
        status: ``FINISHED`` or ``FAILED``.
        cached: whether its outputs were reused instead of running it.
        run_id: its child run.
        error: the exception it raised (after its retries), if it failed.
        duration_s: wall time of the step, retries and storing outputs included.
        attempts: how many times the function was called (0 when cached).
    """

    name: str
    status: RunStatus
    cached: bool
    run_id: str
    error: BaseException | None = None
    duration_s: float = 0.0
    attempts: int = 0
    values: Mapping[str, Value] = field(default_factory=dict, repr=False)
    multiple: bool = field(default=False, repr=False)

    @property
    def outputs(self) -> dict[str, Any]:
        """Each output by name; a reused output is read from the artifact store now."""
        return {name: value.get() for name, value in self.values.items()}

    @property
    def output(self) -> Any:
        """The step's return value: the single output, a tuple of several, or None."""
        values = [v.get() for v in self.values.values()]
        if self.multiple:
            return tuple(values)
        return values[0] if values else None

    @property
    def digests(self) -> dict[str, StoredOutput]:
        """Each output's artifact (sha256, size, serializer) by name."""
        return {name: value.stored for name, value in self.values.items()}


@dataclass(frozen=True)
class PipelineResult:
    """How a pipeline run ended.

    Attributes:
        pipeline: the pipeline's name.
        status: ``FINISHED``, ``FAILED`` (a step failed) or ``KILLED`` (interrupted).
        run_id: the parent run; each step is a child run of it.
        steps: the result of every step that started, by invocation name.
        not_started: steps that never ran because an upstream step failed.
        terminal: the steps whose outputs no other step consumes.
    """

    pipeline: str
    status: RunStatus
    run_id: str
    steps: dict[str, StepResult]
    not_started: list[str] = field(default_factory=list)
    terminal: list[str] = field(default_factory=list)

    @property
    def outputs(self) -> dict[str, Any]:
        """The terminal steps' return values by step name."""
        return {n: self.steps[n].output for n in self.terminal if n in self.steps}

    @property
    def failed(self) -> list[StepResult]:
        """The steps that failed."""
        return [s for s in self.steps.values() if s.status is RunStatus.FAILED]

    @property
    def error(self) -> BaseException | None:
        """The first failed step's exception, if any."""
        failed = self.failed
        return failed[0].error if failed else None


@dataclass(frozen=True)
class StepEvent:
    """A step starting or ending, for progress displays (``on_event=``)."""

    name: str
    kind: str  # "started" | "ended"
    result: StepResult | None = None
