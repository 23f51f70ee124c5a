"""``conveyor run PATH.py:attr | module:attr``: run a pipeline with a live table of its steps."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli import context

if TYPE_CHECKING:
    from rich.table import Table

    from conveyor.core.pipeline import Pipeline
    from conveyor.runtime.results import PipelineResult, StepEvent, StepResult

_STYLE = {"RUNNING": "cyan", "FINISHED": "green", "FAILED": "red", "KILLED": "yellow"}


def run(
    target: str = typer.Argument(
        ..., metavar="TARGET", help="The pipeline: path/to/file.py:name or package.module:name."
    ),
    param: list[str] = typer.Option(
        None, "--param", "-p", metavar="K=V", help="A pipeline parameter (repeatable)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every step, reusing nothing."),
    experiment: str = typer.Option(
        None,
        "--experiment",
        "-e",
        help="Record into this experiment (default: the pipeline's name).",
    ),
    resume: str = typer.Option(
        None, "--resume", metavar="RUN_ID", help="Reuse the finished steps of this earlier run."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run a pipeline: each step a child run, cached steps reused, outputs stored.

    Example: conveyor run pipelines/training.py:training --param max_depth=8
    """
    from conveyor.runtime.runner import run_pipeline

    pipeline = load_pipeline(target)
    params = pipeline.parse_params(_pairs(param or []))
    tracker = context.tracker()
    resume_id = context.resolve_run_id(resume) if resume else None
    started = time.perf_counter()
    options: dict[str, Any] = {
        "cache": not no_cache,
        "tracker": tracker,
        "experiment": experiment,
        "resume": resume_id,
    }
    if as_json:
        # What steps print goes to stderr, so that stdout is one JSON document.
        with contextlib.redirect_stdout(sys.stderr):
            result = run_pipeline(pipeline, params, **options)
    else:
        result = _run_live(pipeline, params, options)
    _report(result, time.perf_counter() - started, as_json)


def load_pipeline(target: str) -> Pipeline:
    """The ``@pipeline`` named by ``path/to/file.py:name`` or ``package.module:name``.

    Raises:
        ValidationError: the target is malformed or does not name a pipeline.
        NotFoundError: the file, module or attribute does not exist.
    """
    from conveyor.core.pipeline import Pipeline
    from conveyor.errors import NotFoundError, ValidationError

    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise ValidationError(
            "target", "give PATH.py:name or module:name, e.g. pipelines.py:training"
        )
    module = _load_file(Path(where)) if where.endswith(".py") else _load_module(where)
    found = getattr(module, attr, None)
    if found is None:
        names = [k for k, v in vars(module).items() if isinstance(v, Pipeline)]
        raise NotFoundError(f"{where} has no {attr!r}; its pipelines: {', '.join(names) or 'none'}")
    if not isinstance(found, Pipeline):
        raise ValidationError("target", f"{target} is a {type(found).__name__}, not a @pipeline")
    return found


def _load_file(path: Path) -> Any:
    from conveyor.errors import NotFoundError

    if not path.is_file():
        raise NotFoundError(f"no pipeline file {str(path)!r}")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the pipeline's sibling modules import as they would in it
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_module(name: str) -> Any:
    from conveyor.errors import NotFoundError

    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise NotFoundError(f"no module {name!r} ({exc})") from exc


def _pairs(items: list[str]) -> dict[str, str]:
    from conveyor.errors import ValidationError

    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError("--param", f"expected KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value
    return pairs


def _run_live(
    pipeline: Pipeline, params: dict[str, Any], options: dict[str, Any]
) -> PipelineResult:
    from rich.live import Live

    from conveyor.runtime.runner import run_pipeline

    rows: dict[str, tuple[str, StepResult | None, float]] = {}

    def render() -> Table:
        return _table(pipeline.name, rows)

    console = context.console()
    if not console.is_terminal:  # no animation to show: the final table, once
        result = run_pipeline(pipeline, params, on_event=lambda e: _record(rows, e), **options)
        _not_started(rows, result)
        console.print(render())
        return result
    with Live(render(), console=console, refresh_per_second=8) as live:

        def on_event(event: StepEvent) -> None:
            _record(rows, event)
            live.update(render())

        result = run_pipeline(pipeline, params, on_event=on_event, **options)
        _not_started(rows, result)
        live.update(render())
    return result


def _record(rows: dict[str, tuple[str, StepResult | None, float]], event: StepEvent) -> None:
    status = "RUNNING" if event.kind == "started" else ""
    rows[event.name] = (status, event.result, time.perf_counter())


def _not_started(
    rows: dict[str, tuple[str, StepResult | None, float]], result: PipelineResult
) -> None:
    for name in result.not_started:
        rows[name] = ("NOT STARTED", None, 0.0)


def _table(title: str, rows: dict[str, tuple[str, StepResult | None, float]]) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=f"pipeline {title}", box=box.SIMPLE_HEAD, header_style="bold")
    for col in ("step", "status", "cached", "took", "run"):
        table.add_column(col, no_wrap=True)
    for name, (status, result, since) in rows.items():
        if result is None:
            style = _STYLE.get(status, "dim")
            took = f"{time.perf_counter() - since:.1f}s" if status == "RUNNING" else "-"
            table.add_row(name, f"[{style}]{status}[/]", "", took, "")
            continue
        value = result.status.value
        cached = "[cyan]cached[/]" if result.cached else ""
        table.add_row(
            name,
            f"[{_STYLE[value]}]{value}[/]",
            cached,
            _took(result.duration_s),
            result.run_id[:8],
        )
    return table


def _took(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def _report(result: PipelineResult, seconds: float, as_json: bool) -> None:
    if as_json:
        context.print_json(result_dict(result, seconds))
    else:
        cached = sum(s.cached for s in result.steps.values())
        context.console().print(
            f"run {result.run_id} {result.status.value} in {seconds:.2f}s "
            f"({len(result.steps)} step(s), {cached} cached)",
            highlight=False,
        )
    failed = result.failed
    if failed:
        from rich.console import Console
        from rich.markup import escape

        step = failed[0]
        line = f"step {step.name!r} failed: {type(step.error).__name__}: {step.error}"
        Console(stderr=True).print(f"[bold red]error:[/] {escape(line)}", highlight=False)
        raise typer.Exit(1)


def result_dict(result: PipelineResult, seconds: float) -> dict[str, Any]:
    """A pipeline result as plain JSON-able data."""
    return {
        "run_id": result.run_id,
        "pipeline": result.pipeline,
        "status": result.status.value,
        "seconds": seconds,
        "steps": {
            name: {
                "status": s.status.value,
                "cached": s.cached,
                "run_id": s.run_id,
                "duration_s": s.duration_s,
                "attempts": s.attempts,
                "error": None if s.error is None else f"{type(s.error).__name__}: {s.error}",
                "outputs": {k: v.sha256 for k, v in s.digests.items()},
            }
            for name, s in result.steps.items()
        },
        "not_started": result.not_started,
    }
