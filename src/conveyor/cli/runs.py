"""``conveyor runs``: list, show, compare and reap tracked runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli import context

if TYPE_CHECKING:
    from conveyor.core.entities import Run

app = typer.Typer(help="Look at tracked runs.", no_args_is_help=True)

_STATUS_STYLE = {"RUNNING": "cyan", "FINISHED": "green", "FAILED": "red", "KILLED": "yellow"}


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(run: Run) -> str:
    ms = run.duration_ms
    return "-" if ms is None else f"{ms / 1000:.1f}s"


def _status(run: Run) -> str:
    style = _STATUS_STYLE.get(run.status.value, "white")
    return f"[{style}]{run.status.value}[/]"


def run_dict(run: Run) -> dict[str, Any]:
    """A run as plain JSON-able data."""
    return {
        "id": run.id,
        "name": run.name,
        "experiment_id": run.experiment_id,
        "status": run.status.value,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "parent_run_id": run.parent_run_id,
        "git_sha": run.source.git_sha,
        "diff_hash": run.source.diff_hash,
        "params": dict(run.params),
        "metrics": dict(run.metrics),
        "tags": dict(run.tags),
        "artifacts": [
            {"path": a.path, "sha256": a.sha256, "size": a.size, "media_type": a.media_type}
            for a in run.artifacts
        ],
    }


@app.command("list")
def list_runs(
    experiment: list[str] = typer.Option(
        None, "--experiment", "-e", help="Only these experiments."
    ),
    filter: str = typer.Option(
        None,
        "--filter",
        "-f",
        metavar="EXPR",
        help="e.g. \"metrics.auc > 0.8 and params.lr = '0.1'\".",
    ),
    order_by: list[str] = typer.Option(
        None, "--order-by", "-o", metavar="KEY", help='e.g. "metrics.auc DESC" (repeatable).'
    ),
    max_results: int = typer.Option(
        50, "--max", "-n", metavar="N", help="Show at most this many runs."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List runs, newest first, with their key metrics.

    Example: conveyor runs list -e flights -f "metrics.auc > 0.8" -o "metrics.auc DESC"
    """
    found = context.tracker().search_runs(experiment or None, filter, order_by, max_results)
    assert isinstance(found, list)
    if as_json:
        context.print_json([run_dict(r) for r in found])
        return
    from rich import box
    from rich.table import Table

    metric_keys = sorted({k for r in found for k in r.metrics})[:3]
    table = Table(title=f"{len(found)} run(s)", header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold", min_width=10)
    for col in ("status", "started (UTC)", "took"):
        table.add_column(col, no_wrap=True)
    for key in metric_keys:
        table.add_column(key, overflow="fold")
    for r in found:
        values = [_fmt(r.metrics.get(k)) for k in metric_keys]
        started = _when(r.start_time)[:16]
        table.add_row(r.id[:8], r.name, _status(r), started, _duration(r), *values)
    context.console().print(table)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@app.command("show")
def show(
    run_id: str = typer.Argument(..., help="The run's id (a unique prefix works)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show one run: status, source, params, latest metrics, tags and artifacts."""
    run = context.tracker().get_run(_resolve(run_id))
    if as_json:
        context.print_json(run_dict(run))
        return
    from rich.table import Table

    con = context.console()
    con.print(f"[bold]{run.name}[/]  {run.id}  {_status(run)}")
    con.print(
        f"started {_when(run.start_time)} UTC, ended {_when(run.end_time)}, "
        f"duration {_duration(run)}, git {run.source.git_sha or '-'}"
        + (" (dirty)" if run.source.dirty else "")
    )
    for title, data in (("params", run.params), ("metrics", run.metrics), ("tags", run.tags)):
        table = Table(title=title, header_style="bold", title_justify="left")
        table.add_column("key")
        table.add_column("value")
        for key, value in sorted(data.items()):
            table.add_row(key, _fmt(value) if isinstance(value, float) else str(value))
        con.print(table)
    arts = Table(title="artifacts", header_style="bold", title_justify="left")
    for col in ("path", "size", "sha256"):
        arts.add_column(col)
    for a in run.artifacts:
        arts.add_row(a.path, _size(a.size), a.sha256[:12])
    con.print(arts)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@app.command("compare")
def compare(
    run_ids: list[str] = typer.Argument(..., help="Two or more run ids (unique prefixes work)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Compare runs side by side; rows whose values differ are highlighted."""
    tracker = context.tracker()
    found = [tracker.get_run(_resolve(r)) for r in run_ids]
    if as_json:
        context.print_json([run_dict(r) for r in found])
        return
    from rich.table import Table

    table = Table(header_style="bold")
    table.add_column("")
    for r in found:
        table.add_column(f"{r.name}\n{r.id[:12]}")
    for kind in ("params", "metrics"):
        keys = sorted({k for r in found for k in getattr(r, kind)})
        for key in keys:
            cells = [getattr(r, kind).get(key) for r in found]
            shown = [
                "-" if c is None else (_fmt(c) if isinstance(c, float) else str(c)) for c in cells
            ]
            differs = len(set(shown)) > 1
            label = f"{kind}.{key}"
            table.add_row(f"[yellow]{label}[/]" if differs else label, *shown)
    context.console().print(table)


@app.command("reap")
def reap() -> None:
    """Mark FAILED every RUNNING run whose process stopped sending heartbeats."""
    tracker = context.tracker()
    ids = tracker.reap()
    grace = tracker.grace_seconds
    context.console().print(f"{len(ids)} run(s) marked FAILED (heartbeat older than {grace:g} s)")
    for run_id in ids:
        context.console().print(f"  {run_id}")


def _resolve(prefix: str) -> str:
    """A full run id from a unique prefix of at least 6 characters."""
    if len(prefix) == 32:
        return prefix
    from conveyor.errors import NotFoundError, ValidationError

    if len(prefix) < 6:
        raise ValidationError("run id", "give the full id or a prefix of at least 6 characters")
    esc = prefix.replace("\\", "\\\\").replace("'", "\\'")
    found = context.tracker().search_runs(filter=f"attributes.run_id LIKE '{esc}%'", max_results=2)
    assert isinstance(found, list)
    if not found:
        raise NotFoundError(f"no run id starts with {prefix!r}")
    if len(found) > 1:
        raise ValidationError("run id", f"prefix {prefix!r} matches several runs; give more of it")
    return found[0].id
