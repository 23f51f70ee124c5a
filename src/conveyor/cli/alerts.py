"""``conveyor alerts``: the alerts monitors raised; list them, acknowledge and resolve them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli import context

if TYPE_CHECKING:
    from conveyor.core.loop import Alert
    from conveyor.stores.metadata.loop import LoopStore

app = typer.Typer(help="Alerts raised by monitors.", no_args_is_help=True)

_SEVERITY = {"critical": "[bold red]critical[/]", "warning": "[yellow]warning[/]"}
_STATE = {"open": "[bold]open[/]", "acknowledged": "acknowledged", "resolved": "[dim]resolved[/]"}


def _store() -> LoopStore:
    from conveyor.stores.backends import open_loop_store

    return open_loop_store(context.settings().metadata_uri)


def _when(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _check_state(state: str | None) -> None:
    from conveyor.core.loop import ALERT_STATES
    from conveyor.errors import ValidationError

    if state is not None and state not in ALERT_STATES:
        raise ValidationError("--state", f"must be one of {', '.join(ALERT_STATES)}, got {state!r}")


@app.command("list")
def list_alerts(
    state: str = typer.Option(None, "--state", help="open, acknowledged or resolved."),
    monitor: str = typer.Option(None, "--monitor", "-m", help="Only alerts of this monitor."),
    model: str = typer.Option(None, "--model", help="Only alerts about this model."),
    limit: int = typer.Option(100, "--limit", help="At most this many (the newest)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The alerts monitors raised, oldest first.

    Example: conveyor alerts list --state open --monitor flights-production
    """
    from conveyor.errors import ValidationError
    from conveyor.monitoring.alerts import alert_dict

    _check_state(state)
    if limit < 1:
        raise ValidationError("--limit", f"must be at least 1, got {limit}")
    found = _store().list_alerts(source=monitor, model=model, state=state, limit=100_000)[-limit:]
    if as_json:
        context.print_json([alert_dict(a) for a in found])
        return
    _print(found)


def _print(alerts: list[Alert]) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    if not alerts:
        context.console().print("no alerts")
        return
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, title="alerts (UTC)")
    for col in ("id", "raised", "monitor", "rule", "severity", "state", "model"):
        table.add_column(col, no_wrap=True)
    table.add_column("message", overflow="fold", max_width=60)
    for a in alerts:
        model = (
            "-"
            if a.model is None
            else f"{a.model}" + ("" if a.version is None else f"/{a.version}")
        )
        retrain = a.payload.get("retrain")
        note = (
            f" [dim](retrain {escape(str(retrain.get('pipeline')))})[/]"
            if isinstance(retrain, dict)
            else ""
        )
        table.add_row(
            str(a.id),
            _when(a.created_at),
            escape(a.source),
            escape(a.rule),
            _SEVERITY.get(a.severity, escape(a.severity)),
            _STATE.get(a.state, escape(a.state)),
            escape(model),
            escape(a.message) + note,
        )
    context.console().print(table)


def _move(alert_id: int, state: str) -> Any:
    alert = _store().set_alert_state(alert_id, state)
    context.console().print(
        f"alert #{alert.id} ({alert.rule}, {alert.source}) is now {alert.state}"
    )
    return alert


@app.command("ack")
def ack(alert_id: int = typer.Argument(..., metavar="ID", help="The alert's id.")) -> None:
    """Acknowledge an alert: someone is on it."""
    _move(alert_id, "acknowledged")


@app.command("resolve")
def resolve(alert_id: int = typer.Argument(..., metavar="ID", help="The alert's id.")) -> None:
    """Resolve an alert."""
    _move(alert_id, "resolved")
