"""The flights pipeline on January-February 2013, end to end (the first half of ``make demo``).

Lands the months as Parquet files in the project (the "new data"), runs the
training pipeline that ``conveyor init`` writes into new projects
(``src/conveyor/templates/project/pipelines/training.py``) with tracking, lineage
and caching, prints each stage's time, a summary of the registered model and
the commands to look at runs, lineage and the model. A second run reuses
every cached stage and registers nothing new.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

TEMPLATE = Path(__file__).resolve().parents[1] / "src" / "conveyor" / "templates" / "project"
sys.path.insert(0, str(TEMPLATE / "pipelines"))

from training import MODEL, training  # noqa: E402

import conveyor  # noqa: E402
from conveyor import lifecycle as lc  # noqa: E402
from conveyor.runtime.results import StepEvent  # noqa: E402

MONTHS = (1, 2)
console = Console()


def land(folder: Path) -> str:
    """Write each month as its own Parquet file (once), as new data would land."""
    folder.mkdir(parents=True, exist_ok=True)
    for month in MONTHS:
        path = folder / f"flights-2013-{month:02d}.parquet"
        if not path.exists():
            lc.load_flights(months=[month]).to_parquet(path, index=False)
    return str(folder / "flights-2013-*.parquet")


def on_event(event: StepEvent) -> None:
    if event.kind == "started":
        console.print(f"  [dim]…[/] {event.name}")
        return
    result = event.result
    assert result is not None
    how = "[cyan]cached[/]" if result.cached else f"{result.duration_s:6.1f} s"
    mark = "[green]✓[/]" if result.status.value == "FINISHED" else "[red]✗[/]"
    console.print(f"  {mark} {event.name:<16} {how}")


def main() -> None:
    started = time.perf_counter()
    settings = conveyor.load_settings()
    data = land(settings.project / ".conveyor" / "data")
    console.print(f"[bold]flights[/]: training on {', '.join(f'2013-{m:02d}' for m in MONTHS)}")
    result = conveyor.run_pipeline(
        training, {"data": data}, experiment="flights", on_event=on_event
    )
    if result.status.value != "FINISHED":
        failed = [s for s in result.steps.values() if s.error is not None]
        for step in failed:
            console.print(f"[red]step {step.name} failed:[/] {step.error}")
        raise SystemExit(1)
    summarize(result, time.perf_counter() - started)


def summarize(result: conveyor.PipelineResult, elapsed: float) -> None:
    outcome = result.outputs["register_model"]
    registry = conveyor.get_registry()
    production = registry.get_alias(MODEL, "challenger")
    table = Table(title=f"{MODEL}@challenger is version {production.version}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key in ("roc_auc", "accuracy", "f1", "log_loss", "ece"):
        if key in production.metrics:
            table.add_row(key, f"{production.metrics[key]:.4f}")
    if result.steps["register_model"].cached:
        registered = "nothing new (every stage cached)"
    elif outcome["registered"]:
        registered = f"version {outcome['version']}"
    else:
        registered = "nothing: the gate failed"
    table.add_row("this run registered", registered)
    table.add_row("pipeline run", result.run_id[:8])
    table.add_row("wall time", f"{elapsed:.1f} s")
    console.print(table)
    for reason in outcome["reasons"]:
        console.print(f"  gate: {reason}")
    console.print("look at it with:")
    for command in (
        "conveyor runs list -e flights",
        f"conveyor runs lineage {result.run_id[:8]}",
        f"conveyor models show {MODEL}@challenger",
        f"conveyor models history {MODEL}",
    ):
        console.print(f"  [bold].venv/bin/{command}[/]")


if __name__ == "__main__":
    main()
