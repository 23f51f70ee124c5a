"""``conveyor monitor``: profile a dataset; test current data for drift against a reference."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli import context

if TYPE_CHECKING:
    from conveyor.monitoring import DriftReport, Profile

app = typer.Typer(help="Profiles and data drift.", no_args_is_help=True)

_PARQUET_MAGIC = b"PAR1"


def _load(path: Path, role: str) -> Any:
    """A Parquet path as is, or the `Profile` in a file from ``monitor profile --out``."""
    from conveyor.errors import ValidationError

    if not path.is_file():
        raise ValidationError(role, f"{path} is not a file")
    with path.open("rb") as f:
        head = f.read(4)
    if head == _PARQUET_MAGIC:
        return path
    from conveyor.monitoring import Profile

    return Profile.from_bytes(path.read_bytes())


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    from conveyor.errors import ValidationError

    out: dict[str, str] = {}
    for item in items or []:
        column, sep, value = item.rpartition("=")
        if not sep or not column or not value:
            raise ValidationError(option, f"expects COLUMN=VALUE, got {item!r}")
        out[column] = value
    return out


def _thresholds(items: list[str] | None) -> dict[str, float]:
    from conveyor.errors import ValidationError

    out: dict[str, float] = {}
    for column, value in _pairs(items, "--threshold").items():
        try:
            out[column] = float(value)
        except ValueError:
            raise ValidationError("--threshold", f"{value!r} is not a number") from None
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


_VERDICT = {True: "[bold red]yes[/]", False: "[green]no[/]", None: "[dim]-[/]"}


def _print_report(report: DriftReport) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(header_style="bold", box=box.SIMPLE_HEAD, title=f"data drift ({report.mode})")
    table.add_column("column", min_width=6, overflow="fold")
    for col in ("type", "method", "statistic", "p-value", "threshold", "drifted"):
        table.add_column(col, no_wrap=True)
    table.add_column("note", overflow="fold", max_width=48)
    for r in report.columns.values():
        note = r.reason or "; ".join(r.notes)
        stats = (_fmt(r.statistic), _fmt(r.p_value), _fmt(r.threshold))
        table.add_row(r.column, r.kind, r.method or "-", *stats, _VERDICT[r.drifted], escape(note))
    con = context.console()
    con.print(table)
    tested, drifted = len(report.tested_columns), len(report.drifted_columns)
    share = "-" if report.share_drifted is None else f"{report.share_drifted:.0%}"
    verdict = {True: "[bold red]DRIFT[/]", False: "[green]no drift[/]", None: "[dim]untested[/]"}
    con.print(
        f"dataset: {verdict[report.drifted]} - {drifted} of {tested} tested column(s) drifted "
        f"({share}; threshold {report.drift_share:.0%})"
    )


@app.command("drift")
def drift(
    reference: Path = typer.Option(
        ..., "--reference", "-r", help="Reference data: Parquet, or a profile file (sketch mode)."
    ),
    current: Path = typer.Option(
        ..., "--current", "-c", help="Current data: Parquet, or a profile file (sketch mode)."
    ),
    method: list[str] = typer.Option(
        None,
        "--method",
        "-m",
        metavar="COLUMN=METHOD",
        help="ks, wasserstein, psi, jensenshannon, chisquare or z for a column (repeatable).",
    ),
    threshold: list[str] = typer.Option(
        None, "--threshold", "-t", metavar="COLUMN=VALUE", help="Threshold for a column."
    ),
    mode: str = typer.Option(
        "exact", "--mode", help="exact (raw data) or sketch (from profiles, any size)."
    ),
    drift_share: float = typer.Option(
        0.5, "--drift-share", help="Share of drifted columns from which the dataset drifts."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    html: Path = typer.Option(None, "--html", help="Also write a self-contained HTML report."),
    fail_on_drift: bool = typer.Option(
        False, "--fail-on-drift", help="Exit with code 3 when the dataset drifted."
    ),
) -> None:
    """Test every column of the reference for drift in the current data.

    Example: conveyor monitor drift -r january.parquet -c february.parquet -m fare=psi
    """
    from conveyor.monitoring import drift as run_drift

    report = run_drift(
        _load(reference, "--reference"),
        _load(current, "--current"),
        _pairs(method, "--method"),
        mode=mode,  # type: ignore[arg-type]  # drift() validates it
        thresholds=_thresholds(threshold),
        drift_share=drift_share,
    )
    if html is not None:
        from conveyor.monitoring.report import write_html

        write_html(report, html)
    if as_json:
        context.print_json(report.to_dict())
    else:
        _print_report(report)
        if html is not None:
            context.console().print(f"HTML report written to {html}")
    if fail_on_drift and report.drifted:
        raise typer.Exit(3)


def _print_profile(prof: Profile) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(header_style="bold", box=box.SIMPLE_HEAD, title=f"{prof.rows} rows")
    table.add_column("column", min_width=6, overflow="fold")
    for col in ("type", "nulls", "distinct", "min", "median", "max", "mean", "std"):
        table.add_column(col, overflow="fold")
    table.add_column("top values", overflow="fold", max_width=40)
    for name, summary in prof.to_dict(top=3)["columns"].items():
        numbers = [summary.get(k) for k in ("min", "max", "mean", "std")]
        median = summary.get("quantiles", {}).get("p50")
        lo, hi, mean, std = (_cell(v) for v in numbers)
        top = ", ".join(f"{t['value']} ({t['count']})" for t in summary.get("top", []))
        distinct = f"{summary['distinct']}" + ("" if summary["distinct_exact"] else "~")
        nulls = str(summary["nulls"])
        row = (summary["kind"], nulls, distinct, lo, _cell(median), hi, mean, std, escape(top))
        table.add_row(escape(name), *row)
    context.console().print(table)
    for name, kind in prof.skipped.items():
        context.console().print(f"skipped {escape(name)}: type {escape(kind)} is not monitored")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return _fmt(value) if isinstance(value, float) else str(value)


@app.command("profile")
def profile(
    data: Path = typer.Argument(..., help="A Parquet file (read in row batches)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Also save the full, mergeable profile here (for sketch mode)."
    ),
) -> None:
    """Profile a dataset: counts, nulls, types, distinct values, quantiles, top values."""
    from conveyor.monitoring import profile as run_profile

    prof = run_profile(_load_data(data))
    if out is not None:
        out.write_bytes(prof.to_bytes())
    if as_json:
        context.print_json(prof.to_dict())
        return
    _print_profile(prof)
    if out is not None:
        context.console().print(f"profile written to {out}")


def _load_data(path: Path) -> Path:
    from conveyor.errors import ValidationError

    loaded = _load(path, "data")
    if not isinstance(loaded, Path):
        raise ValidationError("data", f"{path} is already a profile; give the Parquet data")
    return loaded


# --- monitors from conveyor.yaml ------------------------------------------------------


def _parse_now(text: str | None) -> int | None:
    """``--now``: epoch milliseconds, or an ISO date/time (UTC unless it names a zone)."""
    from datetime import UTC, datetime

    from conveyor.errors import ValidationError

    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            "--now", f"must be epoch milliseconds or an ISO time (2013-03-01T06:00), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _monitors(name: str | None) -> list[Any]:
    from conveyor.errors import ConfigError
    from conveyor.monitoring.monitors import parse_monitors

    monitors = parse_monitors(context.settings().extra.get("monitors"))
    if not monitors:
        raise ConfigError("no monitors: add a monitors: list to conveyor.yaml")
    if name is None:
        return monitors
    chosen = [m for m in monitors if m.name == name]
    if not chosen:
        known = ", ".join(m.name for m in monitors)
        raise ConfigError(f"--monitor: no monitor named {name!r} in conveyor.yaml ({known})")
    return chosen


def _loop_store() -> Any:
    from conveyor.stores.backends import open_loop_store

    return open_loop_store(context.settings().metadata_uri)


def _when(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


_FIRST = ("roc_auc", "accuracy", "f1", "rmse", "mae", "r2")


def _quality_text(quality: dict[str, Any]) -> str:
    order = [k for k in _FIRST if k in quality] + [k for k in quality if k not in _FIRST]
    shown = [(k, quality[k]) for k in order if quality[k] is not None][:3]
    return ", ".join(f"{k} {v:.3g}" for k, v in shown) or "-"


_STATUS = {
    "ok": "[green]ok[/]",
    "drift": "[yellow]drift[/]",
    "degraded": "[bold red]degraded[/]",
    "error": "[bold red]error[/]",
    "empty": "[dim]empty[/]",
}


def _evaluation_row(e: Any) -> tuple[str, ...]:
    m = e.metrics
    coverage = m.get("coverage")
    return (
        e.monitor,
        _when(e.window_start),
        str(m.get("rows", 0)),
        _fmt(e.drift_share),
        _quality_text(m.get("quality") or {}),
        "-" if coverage is None else f"{coverage:.0%}",
        _STATUS.get(e.status, e.status),
    )


@app.command("run")
def run(
    monitor: str = typer.Option(None, "--monitor", "-m", help="Only this monitor."),
    now: str = typer.Option(
        None, "--now", help="The present: epoch ms or ISO time, UTC (default: the clock)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Evaluate the windows that closed since each monitor's last run (monitors: in conveyor.yaml).

    Example: conveyor monitor run --monitor flights-production --now 2013-03-01T00:00
    """
    from conveyor.cli.models import registry
    from conveyor.monitoring.monitors import run_monitors

    monitors = _monitors(monitor)
    reg = registry()
    results = run_monitors(
        monitors,
        loop_store=_loop_store(),
        byte_store=reg.artifacts.byte_store,
        artifacts=reg.artifacts,
        registry=reg,
        now_ms=_parse_now(now),
    )
    if as_json:
        context.print_json(
            [
                {**_evaluation_dict(r.evaluation), "alerts": [a.id for a in r.alerts]}
                for r in results
            ]
        )
        return
    _print_results(results)


def _evaluation_dict(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "monitor": e.monitor,
        "model": e.model,
        "window_start": e.window_start,
        "window_end": e.window_end,
        "status": e.status,
        "drift_share": e.drift_share,
        "report_sha256": e.report_sha256,
        "metrics": e.metrics,
    }


def _print_results(results: list[Any]) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    con = context.console()
    if not results:
        con.print("no window closed since the last run")
        return
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, title="monitor windows (UTC)")
    for col in ("monitor", "window", "rows", "drift share", "quality", "coverage", "status"):
        table.add_column(col, no_wrap=col != "quality")
    table.add_column("alerts", overflow="fold", max_width=40)
    for r in results:
        alerts = ", ".join(f"#{a.id} {a.rule}" for a in r.alerts) or "-"
        table.add_row(
            *(escape(c) if i < 5 else c for i, c in enumerate(_evaluation_row(r.evaluation))),
            escape(alerts),
        )
    con.print(table)


@app.command("history")
def history(
    name: str = typer.Argument(..., help="The monitor's name."),
    html: Path = typer.Option(None, "--html", help="Also write the history as an HTML page."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    limit: int = typer.Option(1000, "--limit", help="At most this many windows (the newest)."),
) -> None:
    """Drift share and quality of a monitor's windows over time (the newest evaluation of each)."""
    from conveyor.errors import NotFoundError
    from conveyor.monitoring.pages import latest_per_window, render_history

    evaluations = _loop_store().list_evaluations(name, limit=100_000)
    if not evaluations:
        raise NotFoundError(f"no evaluations of monitor {name!r}; run `conveyor monitor run`")
    windows = latest_per_window(evaluations)[-limit:]
    if html is not None:
        html.write_text(render_history(name, windows), encoding="utf-8")
    if as_json:
        context.print_json([_evaluation_dict(e) for e in windows])
        return
    _print_history(name, windows)
    if html is not None:
        context.console().print(f"HTML history written to {html}")


def _print_history(name: str, windows: list[Any]) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(header_style="bold", box=box.SIMPLE_HEAD, title=f"{name}: windows (UTC)")
    for col in ("window", "rows", "drift share", "quality", "coverage", "status", "alerts"):
        table.add_column(col, no_wrap=col != "quality")
    for e in windows:
        row = _evaluation_row(e)[1:]
        alerts = ", ".join(e.metrics.get("alerts") or []) or "-"
        table.add_row(*(escape(c) if i < 5 else c for i, c in enumerate(row)), escape(alerts))
    context.console().print(table)
