"""One step invocation as a child run: reuse a cached result or call the function, then record.

This is what the runner submits to the executor. Everything a step does is
recorded on its own child run: literal parameters, input artifacts (lineage),
its captured log (``logs/step.log``), its outputs (``outputs/<name><suffix>``),
``duration_s``, and on failure the exception as the ``conveyor.error`` tag with
the traceback in the log. The run ends without a flush; the pipeline flushes once.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.core.entities import RunStatus
from conveyor.core.graph import Node
from conveyor.errors import ValidationError
from conveyor.runtime.cache import (
    TAG_CACHE_KEY,
    TAG_CACHED,
    TAG_CACHED_FROM,
    TAG_ERROR,
    TAG_KIND,
    TAG_OUTPUTS,
    TAG_PIPELINE,
    TAG_STEP,
    CacheHit,
    CacheIndex,
    cache_key,
    canonical_params,
    outputs_tag,
    param_texts,
)
from conveyor.runtime.capture import step_log
from conveyor.runtime.context import step_run
from conveyor.runtime.results import StepResult
from conveyor.runtime.serializers import get_serializer
from conveyor.runtime.values import Value, materialize
from conveyor.stores.artifacts.content import Digest
from conveyor.tracking.tracker import ActiveRun, Tracker

__all__ = ["StepContext", "run_step"]

_MAX_TAG = 5000


@dataclass(frozen=True)
class StepContext:
    """What every step of one pipeline run shares."""

    tracker: Tracker
    pipeline: str
    experiment: str
    parent_run_id: str
    cache: bool
    index: CacheIndex
    resume: Mapping[str, tuple[str, CacheHit]] = field(default_factory=dict)


def run_step(ctx: StepContext, node: Node, inputs: Mapping[str, Value]) -> StepResult:
    """Run (or reuse) one step invocation as a child run of the pipeline's run."""
    started = time.perf_counter()
    literals = node.literals
    params_json = canonical_params(literals)
    digests = {param: value.stored.sha256 for param, value in inputs.items()}
    key = None
    if params_json is not None:
        key = cache_key(node.step.code_hash, digests, params_json, node.step.output_names)
    hit = _find(ctx, node, key)
    tags = {TAG_KIND: "step", TAG_PIPELINE: ctx.pipeline, TAG_STEP: node.name}
    if key is not None:
        tags[TAG_CACHE_KEY] = key
    run = ctx.tracker.start_run(ctx.experiment, node.name, tags, parent_run_id=ctx.parent_run_id)
    try:
        run.log_params(param_texts(literals))
        refs = node.refs
        run.log_inputs((inputs[p].stored.sha256, f"{r.node}.{r.output}") for p, r in refs.items())
        if hit is not None:
            return _reuse(ctx, node, run, hit, started)
        return _execute(ctx, node, run, inputs, started)
    except BaseException:
        run.end(RunStatus.KILLED, flush=False)
        raise


def _find(ctx: StepContext, node: Node, key: str | None) -> CacheHit | None:
    if key is None:
        return None
    resumed = ctx.resume.get(node.name)
    if resumed is not None and resumed[0] == key:
        return resumed[1]
    if not (ctx.cache and node.step.cache):
        return None
    return ctx.index.lookup(key, node.step.output_names)


def _reuse(
    ctx: StepContext, node: Node, run: ActiveRun, hit: CacheHit, started: float
) -> StepResult:
    artifacts = ctx.tracker.artifacts
    allow = node.step.allow_pickle
    values = {
        name: Value(hit.outputs[name], artifacts, allow_pickle=allow)
        for name in node.step.output_names
    }
    _attach_outputs(run, values)
    run.set_tags(
        {TAG_CACHED: "true", TAG_CACHED_FROM: hit.run_id, TAG_OUTPUTS: outputs_tag(hit.outputs)}
    )
    return _finished(node, run, values, started, cached=True, attempts=0)


def _execute(
    ctx: StepContext, node: Node, run: ActiveRun, inputs: Mapping[str, Value], started: float
) -> StepResult:
    attempts = 0
    with step_log() as log:
        try:
            args: dict[str, Any] = node.literals
            args.update({p: v.get() for p, v in inputs.items()})
            with step_run(run):
                returned, attempts = _call_with_retries(node, args, log)
            values = _store_outputs(ctx, node, returned, list(inputs.values()))
        except Exception as exc:  # the step's failure is its result, not the runner's
            log.append(_traceback(exc))
            return _fail(ctx, node, run, exc, log, attempts or 1 + node.step.retries, started)
    _save_log(run, log)
    _attach_outputs(run, values)
    stored = {name: value.stored for name, value in values.items()}
    run.set_tags(
        {TAG_CACHED: "false", TAG_OUTPUTS: outputs_tag(stored), "conveyor.attempts": attempts}
    )
    return _finished(node, run, values, started, cached=False, attempts=attempts)


def _finished(
    node: Node,
    run: ActiveRun,
    values: dict[str, Value],
    started: float,
    *,
    cached: bool,
    attempts: int,
) -> StepResult:
    """End a step's run FINISHED with its duration, and say so."""
    duration = time.perf_counter() - started
    run.log_metric("duration_s", duration)
    run.end(RunStatus.FINISHED, flush=False)
    return StepResult(
        node.name,
        RunStatus.FINISHED,
        cached,
        run.id,
        duration_s=duration,
        attempts=attempts,
        values=values,
        multiple=node.step.multiple_outputs,
    )


def _call_with_retries(node: Node, args: dict[str, Any], log: list[str]) -> tuple[Any, int]:
    step = node.step
    for attempt in range(1, step.retries + 2):
        try:
            return step.fn(**args), attempt
        except Exception as exc:
            if attempt > step.retries:
                raise
            log.append(f"attempt {attempt} of {step.retries + 1} failed; retrying:\n")
            log.append(_traceback(exc))
            if step.retry_delay:
                time.sleep(step.retry_delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _store_outputs(
    ctx: StepContext, node: Node, returned: Any, inputs: list[Value]
) -> dict[str, Value]:
    step = node.step
    names = step.output_names
    if step.multiple_outputs:
        if not isinstance(returned, tuple) or len(returned) != len(names):
            got = (
                f"{type(returned).__name__} of {len(returned)}"
                if isinstance(returned, tuple)
                else type(returned).__name__
            )
            raise ValidationError(
                f"step {node.name!r}", f"must return a tuple of {len(names)} outputs, got {got}"
            )
        objs = returned
    else:
        objs = (returned,) if names else ()
    artifacts = ctx.tracker.artifacts
    return {
        name: materialize(obj, step, node.name, name, inputs, artifacts)
        for name, obj in zip(names, objs, strict=True)
    }


def _attach_outputs(run: ActiveRun, values: Mapping[str, Value]) -> None:
    for name, value in values.items():
        serializer = get_serializer(value.stored.serializer)
        path = f"outputs/{name}{serializer.suffix}"
        digest = Digest(value.stored.sha256, value.stored.size)
        run.attach([(path, digest)], serializer.media_type)


def _save_log(run: ActiveRun, log: list[str]) -> None:
    run.log_bytes("".join(log).encode("utf-8", "replace"), "logs/step.log", "text/plain")


def _fail(
    ctx: StepContext,
    node: Node,
    run: ActiveRun,
    exc: Exception,
    log: list[str],
    attempts: int,
    started: float,
) -> StepResult:
    text = f"{type(exc).__name__}: {exc}"
    run.set_tags({TAG_ERROR: text[:_MAX_TAG], "conveyor.attempts": attempts})
    _save_log(run, log)
    duration = time.perf_counter() - started
    run.log_metric("duration_s", duration)
    run.end(RunStatus.FAILED, flush=False)
    return StepResult(
        node.name,
        RunStatus.FAILED,
        False,
        run.id,
        exc,
        duration,
        attempts,
        {},
        node.step.multiple_outputs,
    )


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
