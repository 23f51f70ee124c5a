"""`run_pipeline`: check a pipeline's DAG, then run its steps in topological order on an executor.

The pipeline is a parent run; each step a child run (see `conveyor.runtime.task`).
A step starts as soon as the steps it consumes have finished, so independent
branches overlap. When a step fails, nothing new starts, the steps already
running finish and are recorded, and the pipeline run ends ``FAILED``; a
re-run reuses every finished step through the cache (or ``resume=``) and so
continues from the failed one. All writes go through the tracker's batched
writer and are flushed once, when the pipeline run ends.
"""

from __future__ import annotations

import typing
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from conveyor.core.entities import RunStatus
from conveyor.core.graph import Graph
from conveyor.core.pipeline import Pipeline
from conveyor.errors import ValidationError
from conveyor.runtime.cache import (
    TAG_ERROR,
    TAG_KIND,
    TAG_PIPELINE,
    TAG_RESUMED_FROM,
    CacheHit,
    CacheIndex,
    param_texts,
    resume_index,
)
from conveyor.runtime.capture import capturing
from conveyor.runtime.executors.base import Executor
from conveyor.runtime.executors.local import LocalExecutor
from conveyor.runtime.results import PipelineResult, StepEvent, StepResult
from conveyor.runtime.serializers import serializer_for_type, unsupported_output
from conveyor.runtime.task import StepContext, run_step
from conveyor.tracking.tracker import ActiveRun, Tracker

__all__ = ["run_pipeline"]

EventHandler = Callable[[StepEvent], None]


def run_pipeline(
    pipeline: Pipeline,
    params: Mapping[str, Any] | None = None,
    *,
    cache: bool = True,
    executor: Executor | None = None,
    tracker: Tracker | None = None,
    experiment: str | None = None,
    resume: str | None = None,
    on_event: EventHandler | None = None,
) -> PipelineResult:
    """Run ``pipeline`` as a tracked parent run with one child run per step.

    Args:
        pipeline: a ``@pipeline`` definition.
        params: values for the pipeline's parameters (the defaults otherwise).
        cache: reuse the outputs of a finished step run with the same cache key
            (code, input digests, parameters); steps with ``@step(cache=False)`` always run.
        executor: where steps run (a `LocalExecutor` by default, shut down afterwards).
        tracker: where runs, artifacts and lineage are recorded.
        experiment: the experiment of the runs (the pipeline's name by default).
        resume: the id of an earlier run of this pipeline whose finished steps are
            reused when their cache key is unchanged, even with ``cache=False``.
        on_event: called (in the calling thread) as each step starts and ends.

    Returns:
        The pipeline's status, run id, and each step's result and outputs.

    Raises:
        PipelineDefinitionError: the DAG or the parameters break a rule (nothing ran).
        ValidationError: an annotated output type has no serializer, or no tracker.
    """
    if tracker is None:
        raise ValidationError(
            "tracker", "pass the Tracker to record into (conveyor.run_pipeline uses the default)"
        )
    if executor is not None and not getattr(executor, "in_process", False):
        raise ValidationError(
            "executor", "only in-process executors (LocalExecutor) can run pipelines so far"
        )
    graph = pipeline.build(params)
    _check_serializers(graph)
    values = pipeline.resolve_params(params)
    resumed = _resume(tracker, resume, pipeline.name)
    tags = {TAG_KIND: "pipeline", TAG_PIPELINE: pipeline.name}
    if resume:
        tags[TAG_RESUMED_FROM] = resume
    parent = tracker.start_run(experiment or pipeline.name, pipeline.name, tags)
    parent.log_params(param_texts(values))
    ctx = StepContext(
        tracker,
        pipeline.name,
        experiment or pipeline.name,
        parent.id,
        cache,
        CacheIndex(tracker.runs, tracker.artifacts),
        resumed,
    )
    return _run(pipeline, graph, ctx, parent, executor, on_event)


def _run(
    pipeline: Pipeline,
    graph: Graph,
    ctx: StepContext,
    parent: ActiveRun,
    executor: Executor | None,
    on_event: EventHandler | None,
) -> PipelineResult:
    chosen = executor if executor is not None else LocalExecutor()
    try:
        with capturing():
            steps = _Scheduler(graph, ctx, chosen, on_event).run()
    except BaseException:
        if executor is None:
            chosen.shutdown(wait=False)  # an interrupt must not wait for running steps
        parent.end(RunStatus.KILLED)
        raise
    if executor is None:
        chosen.shutdown()
    failed = [s for s in steps.values() if s.status is RunStatus.FAILED]
    if failed:
        first = failed[0]
        parent.set_tag(
            TAG_ERROR,
            f"step {first.name!r} failed: {type(first.error).__name__}: {first.error}"[:5000],
        )
    status = RunStatus.FAILED if failed else RunStatus.FINISHED
    parent.end(status)  # the one flush of the whole pipeline run
    return PipelineResult(
        pipeline.name,
        status,
        parent.id,
        steps,
        [name for name in graph.nodes if name not in steps],
        graph.terminal(),
    )


class _Scheduler:
    """Submits each step once its upstream steps have finished; stops starting on failure."""

    def __init__(
        self, graph: Graph, ctx: StepContext, executor: Executor, on_event: EventHandler | None
    ) -> None:
        self.graph = graph
        self.ctx = ctx
        self.executor = executor
        self.on_event = on_event
        self.order = graph.topological_order()
        self.waiting = {name: set(graph[name].upstream) for name in self.order}
        self.consumers: dict[str, list[str]] = {name: [] for name in self.order}
        for name in self.order:
            for upstream in self.waiting[name]:
                self.consumers[upstream].append(name)
        self.results: dict[str, StepResult] = {}
        self.running: dict[Future[StepResult], str] = {}
        self.failed = False

    def run(self) -> dict[str, StepResult]:
        ready = deque(name for name in self.order if not self.waiting[name])
        try:
            while ready or self.running:
                while ready and not self.failed:
                    self._submit(ready.popleft())
                if not self.running:
                    break
                done, _ = wait(self.running, return_when=FIRST_COMPLETED)
                for future in done:
                    ready.extend(self._finish(future))
        except BaseException:
            for future in self.running:
                future.cancel()
            raise
        return {name: self.results[name] for name in self.order if name in self.results}

    def _submit(self, name: str) -> None:
        node = self.graph[name]
        inputs = {
            param: self.results[ref.node].values[ref.output] for param, ref in node.refs.items()
        }
        self.running[self.executor.submit(run_step, self.ctx, node, inputs)] = name
        self._emit(StepEvent(name, "started"))

    def _finish(self, future: Future[StepResult]) -> list[str]:
        name = self.running.pop(future)
        error = future.exception()
        if error is None:
            result = future.result()
        else:  # the runner itself failed around the step (a store error, say)
            result = StepResult(name, RunStatus.FAILED, False, "", error)
        self.results[name] = result
        self._emit(StepEvent(name, "ended", result))
        if result.status is not RunStatus.FINISHED:
            self.failed = True
            return []
        released = []
        for consumer in self.consumers[name]:
            self.waiting[consumer].discard(name)
            if not self.waiting[consumer]:
                released.append(consumer)
        return released

    def _emit(self, event: StepEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


def _check_serializers(graph: Graph) -> None:
    """Refuse, before anything runs, an output annotated with a type nothing can store."""
    for node in graph.nodes.values():
        step = node.step
        for name, annotation in zip(step.output_names, step.output_types, strict=True):
            cls = typing.get_origin(annotation) or annotation
            if not isinstance(cls, type) or cls in (object, Any):
                continue
            if serializer_for_type(cls, step.serializers, allow_pickle=step.allow_pickle) is None:
                raise unsupported_output(node.name, name, cls)


def _resume(tracker: Tracker, run_id: str | None, pipeline: str) -> dict[str, tuple[str, CacheHit]]:
    if run_id is None:
        return {}
    run = tracker.get_run(run_id)
    return resume_index(tracker.runs, tracker.artifacts, run, pipeline)
