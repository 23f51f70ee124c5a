"""`PipelineRunner`: how the agent runs a trigger's ``@pipeline`` and finds what it registered."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.automation.agent import RunOutcome
from conveyor.automation.triggers import TriggerConfig
from conveyor.core.entities import RunStatus

if TYPE_CHECKING:
    from conveyor.core.pipeline import Pipeline
    from conveyor.registry import Registry
    from conveyor.runtime.results import PipelineResult
    from conveyor.tracking.tracker import Tracker

__all__ = ["PipelineRunner"]


class PipelineRunner:
    """Runs a trigger's pipeline as a tracked run; a `RunPipeline` for the `Agent`.

    Args:
        load: gives the ``@pipeline`` a trigger names (``path/file.py:name``); the CLI
            passes its own loader.
        tracker: where the runs are recorded.
        registry: where to look for the versions a run registered (none looked for
            without it, so nothing is handed to delivery).
        experiment: the runs' experiment (the pipeline's name by default).
        cache: reuse unchanged steps' outputs (the default).
    """

    def __init__(
        self,
        load: Callable[[str], Pipeline],
        tracker: Tracker,
        *,
        registry: Registry | None = None,
        experiment: str | None = None,
        cache: bool = True,
    ) -> None:
        self.load = load
        self.tracker = tracker
        self.registry = registry
        self.experiment = experiment
        self.cache = cache

    def __call__(self, trigger: TriggerConfig, params: dict[str, Any]) -> RunOutcome:
        """Run the pipeline; a failed step makes a failed outcome, with its error."""
        from conveyor.runtime.runner import run_pipeline

        pipeline = self.load(trigger.pipeline)
        result = run_pipeline(
            pipeline,
            params,
            cache=self.cache,
            tracker=self.tracker,
            experiment=self.experiment,
        )
        if result.status is not RunStatus.FINISHED:
            error = result.error
            text = f"{type(error).__name__}: {error}" if error else result.status.value
            failed = result.failed[0].name if result.failed else "?"
            return RunOutcome(result.run_id, False, f"step {failed!r} failed: {text}"[:2000])
        return RunOutcome(result.run_id, True, None, self._versions(result))

    def _versions(self, result: PipelineResult) -> tuple[str, ...]:
        """The versions whose lineage names this run or one of its steps."""
        if self.registry is None:
            return ()
        runs = {result.run_id, *(s.run_id for s in result.steps.values())}
        found = []
        for model in self.registry.list_models():
            for version in self.registry.list_versions(model.name):
                if version.run_id in runs:
                    found.append(f"{model.name}/{version.version}")
        return tuple(found)
