"""The top-level tracking API (``conveyor.start_run``, ``conveyor.log_metric``, …).

Names follow MLflow's so that code moves over. Settings are read here, at the
edge, once per process (or again after `configure`); everything below takes
explicit stores. Each thread has its own stack of active runs.
"""

from __future__ import annotations

import atexit
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.entities import ArtifactRecord, Run, RunStatus
from conveyor.errors import NoActiveRunError, StateError
from conveyor.settings import Settings, load_settings
from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.tracking.tracker import ActiveRun, Tracker
from conveyor.tracking.writer import flush_all

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.core.pipeline import Pipeline
    from conveyor.core.registry import ModelVersion
    from conveyor.registry import LoadedModel, Registry
    from conveyor.runtime.executors.base import Executor
    from conveyor.runtime.results import PipelineResult, StepEvent

__all__ = [
    "active_run",
    "configure",
    "download_artifact",
    "end_run",
    "flush",
    "get_registry",
    "get_run",
    "get_tracker",
    "list_artifacts",
    "load_model",
    "log_artifact",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "register_model",
    "run_pipeline",
    "search_runs",
    "set_tag",
    "set_tags",
    "start_run",
]

_lock = threading.Lock()
_tracker: Tracker | None = None
_registry: Registry | None = None
_settings: Settings | None = None
_local = threading.local()


def configure(
    metadata_uri: str | None = None, artifact_uri: str | None = None, project: Path | None = None
) -> Settings:
    """Point the top-level API at other stores (the environment and ``conveyor.yaml`` otherwise).

    Returns:
        The settings now in force.
    """
    global _tracker, _registry, _settings
    base = load_settings(project)
    chosen = Settings(
        project=base.project,
        metadata_uri=metadata_uri or base.metadata_uri,
        artifact_uri=artifact_uri or base.artifact_uri,
        experiment=base.experiment,
        run_grace_seconds=base.run_grace_seconds,
        heartbeat_seconds=base.heartbeat_seconds,
        extra=base.extra,
    )
    with _lock:
        old, old_registry = _tracker, _registry
        _tracker, _registry, _settings = None, None, chosen
    if old is not None:
        old.close()
        old.runs.close()
    if old_registry is not None:
        old_registry.models.close()
    return chosen


def get_tracker() -> Tracker:
    """The process's tracker, opened from the settings on first use."""
    global _tracker, _settings
    with _lock:
        if _tracker is None:
            settings = _settings or load_settings()
            _settings = settings
            _tracker = Tracker(
                open_metadata_store(settings.metadata_uri),
                open_artifact_store(settings.artifact_uri),
                heartbeat_seconds=settings.heartbeat_seconds,
                grace_seconds=settings.run_grace_seconds,
            )
        return _tracker


def get_registry() -> Registry:
    """The process's model registry, over the same stores as the tracker."""
    global _registry
    tracker = get_tracker()
    with _lock:
        if _registry is None:
            from conveyor.registry import Registry
            from conveyor.stores.backends import open_model_store
            from conveyor.tracking.source import detect_source

            assert _settings is not None
            _registry = Registry(
                open_model_store(_settings.metadata_uri),
                tracker.artifacts,
                tracker=tracker,
                source_detector=lambda: detect_source(Path.cwd()),
            )
        return _registry


def register_model(
    name: str,
    model: Any,
    input_example: Any,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    trusted: bool = False,
    run_id: str | None = None,
    metrics: Mapping[str, float] | None = None,
    data_digests: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Register ``model`` as the next version of ``name`` (see `Registry.register_model`).

    The active run, if any, is recorded as the run that trained it.
    """
    active = active_run()
    if run_id is None and active is not None:
        active.flush()  # the registry reads the run's metrics and code version
        run_id = active.id
    return get_registry().register_model(
        name,
        model,
        input_example,
        tags=tags,
        description=description,
        trusted=trusted,
        run_id=run_id,
        metrics=metrics,
        data_digests=data_digests,
    )


def load_model(ref: str) -> LoadedModel:
    """Load ``"name"`` (latest), ``"name/3"`` or ``"name@production"``; ``.predict(df)``."""
    return get_registry().load_model(ref)


def run_pipeline(
    pipeline: Pipeline,
    params: Mapping[str, Any] | None = None,
    *,
    cache: bool = True,
    executor: Executor | None = None,
    experiment: str | None = None,
    resume: str | None = None,
    on_event: Callable[[StepEvent], None] | None = None,
) -> PipelineResult:
    """Run a ``@pipeline`` with the default tracker (see `conveyor.runtime.runner.run_pipeline`)."""
    from conveyor.runtime.runner import run_pipeline as run

    return run(
        pipeline,
        params,
        cache=cache,
        executor=executor,
        tracker=get_tracker(),
        experiment=experiment,
        resume=resume,
        on_event=on_event,
    )


def _stack() -> list[ActiveRun]:
    stack: list[ActiveRun] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def start_run(
    experiment: str | None = None,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    *,
    nested: bool = False,
    parent_run_id: str | None = None,
) -> ActiveRun:
    """Start a run and make it the active one; use it as a context manager.

    Args:
        experiment: the experiment's name (created on first use); defaults to the settings'.
        name: a name for people; defaults to ``run-<id prefix>``.
        tags: initial tags.
        nested: start a child of the active run instead of refusing.
        parent_run_id: make the run a child of this one explicitly.
    """
    stack = _stack()
    if stack and not nested and parent_run_id is None:
        raise StateError(
            f"run {stack[-1].id} is already active; end it first or pass nested=True "
            "to start a child run"
        )
    parent = parent_run_id or (stack[-1].id if stack else None)
    tracker = get_tracker()
    exp = experiment or (_settings.experiment if _settings else "Default")
    run = tracker.start_run(exp, name, tags, parent_run_id=parent, on_end=_forget)
    stack.append(run)
    return run


def _forget(run: ActiveRun) -> None:
    stack = _stack()
    if run in stack:
        stack.remove(run)


def active_run() -> ActiveRun | None:
    """The innermost active run of this thread, if any; inside a pipeline step, the step's run."""
    stack = _stack()
    if stack:
        return stack[-1]
    from conveyor.runtime.context import current_step_run

    return current_step_run()


def _current() -> ActiveRun:
    run = active_run()
    if run is None:
        raise NoActiveRunError("no active run: call conveyor.start_run() first")
    return run


def end_run(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """End the active run (a no-op when none is active)."""
    run = active_run()
    if run is not None:
        run.end(status)


def log_metric(key: str, value: float, step: int = 0, timestamp: int | None = None) -> None:
    """Log one metric point to the active run (buffered; microseconds)."""
    _current().log_metric(key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int = 0, timestamp: int | None = None) -> None:
    """Log several metrics at one step to the active run."""
    _current().log_metrics(metrics, step, timestamp)


def log_param(key: str, value: Any) -> None:
    """Log one parameter to the active run."""
    _current().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    """Log parameters to the active run."""
    _current().log_params(params)


def set_tag(key: str, value: Any) -> None:
    """Set a tag on the active run."""
    _current().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags on the active run."""
    _current().set_tags(tags)


def log_artifact(local_path: str | Path, artifact_path: str | None = None) -> list[ArtifactRecord]:
    """Store a file or folder with the active run."""
    return _current().log_artifact(local_path, artifact_path)


def log_input(sha256: str, name: str = "") -> None:
    """Record that the active run consumed an artifact (lineage)."""
    _current().log_input(sha256, name)


def flush() -> None:
    """Make everything logged so far durable."""
    get_tracker().flush()


def get_run(run_id: str) -> Run:
    """A run with ``.params``, ``.metrics`` (latest), ``.tags``, ``.status``, ``.artifacts``."""
    return get_tracker().get_run(run_id)


def search_runs(
    experiment: str | Sequence[str] | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int = 1000,
    offset: int = 0,
    *,
    as_frame: bool = False,
) -> list[Run] | pd.DataFrame:
    """Search runs with a filter such as ``"metrics.auc > 0.8 and params.lr = '0.1'"``."""
    return get_tracker().search_runs(
        experiment, filter, order_by, max_results, offset, as_frame=as_frame
    )


def list_artifacts(run_id: str, prefix: str = "") -> list[ArtifactRecord]:
    """A run's artifacts under a run-relative prefix."""
    return get_tracker().list_artifacts(run_id, prefix)


def download_artifact(run_id: str, path: str, dest: str | Path = ".") -> Path:
    """Download a run's artifact (a file or a folder path) into ``dest``."""
    return get_tracker().download_artifact(run_id, path, dest)


@atexit.register
def _at_exit() -> None:
    # Runs left open at exit end as MLflow's do: FAILED after an uncaught error, else FINISHED.
    failed = getattr(sys, "last_value", None) is not None
    tracker = _tracker
    if tracker is None:
        return
    for run in list(_stack()):
        try:
            run.end(RunStatus.FAILED if failed else RunStatus.FINISHED)
        except Exception as exc:  # exit goes on; the heartbeat grace marks the run later
            print(f"conveyor: could not end run {run.id} at exit: {exc}", file=sys.stderr)
    flush_all()
