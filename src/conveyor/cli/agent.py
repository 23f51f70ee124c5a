"""``conveyor agent``, ``conveyor trigger`` and ``conveyor triggers``: continuous training.

The agent evaluates the ``triggers:`` of ``conveyor.yaml``, runs the pipelines
that are due and hands each new version to delivery by its deployment policy;
``trigger`` asks for a run by hand; ``triggers list`` and ``triggers history``
show what is declared and what happened.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli import context

if TYPE_CHECKING:
    from conveyor.automation import Agent, TriggerConfig
    from conveyor.core.loop import TriggerEvent
    from conveyor.stores.metadata.loop import LoopStore

triggers_app = typer.Typer(help="Declared triggers and their history.", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")
_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "skipped": "dim",
}


def agent(
    once: bool = typer.Option(False, "--once", help="Run one pass, then exit."),
    interval: str = typer.Option("30s", "--interval", help="The wait between passes (30s, 5m)."),
    lease_ttl: str = typer.Option(
        "60s", "--lease-ttl", help="How long a trigger stays taken if this agent dies."
    ),
    no_deliver: bool = typer.Option(
        False, "--no-deliver", help="Run pipelines, but leave new versions where they are."
    ),
) -> None:
    """Evaluate the triggers; run the pipelines that are due; deliver their new versions.

    Example: conveyor agent --interval 1m
    """
    import os
    import signal

    from conveyor.automation.triggers import parse_duration

    every = parse_duration(interval, "--interval")
    ttl = parse_duration(lease_ttl, "--lease-ttl")
    if not every > 0 or not ttl > 0:
        from conveyor.errors import ValidationError

        raise ValidationError("--interval/--lease-ttl", "must be greater than 0")
    os.chdir(context.settings().project)  # the pipelines' relative paths are the project's
    worker = _agent(lease_ttl_s=ttl, deliver=not no_deliver, on_event=_log_line)
    console = context.console()
    if once:
        acted = worker.run_once()
        if not acted:
            console.print(f"nothing due ({len(worker.triggers)} trigger(s))", highlight=False)
        if any(e.status == "failed" for e in acted):
            raise typer.Exit(1)
        return
    console.print(
        f"agent {worker.holder}: {len(worker.triggers)} trigger(s), a pass every "
        f"{interval}; Ctrl-C stops",
        highlight=False,
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    try:
        worker.run_forever(every)
    except KeyboardInterrupt:
        worker.stop()
    console.print("agent stopped", highlight=False)


def trigger(
    name: str = typer.Argument(..., help="The trigger, as declared in conveyor.yaml."),
    reason: str = typer.Option(..., "--reason", "-r", help="Why (recorded with the event)."),
    param: list[str] = typer.Option(
        None, "--param", "-p", metavar="K=V", help="A pipeline parameter for this run."
    ),
    now: bool = typer.Option(False, "--now", help="Run it here and now instead of by the agent."),
) -> None:
    """Ask for a run of a trigger's pipeline: the next agent pass runs it (or --now, at once).

    Example: conveyor trigger new-data --reason "late labels for March arrived"
    """
    import os

    from conveyor.automation import request_run

    declared = _declared(name)
    params = _params(declared, param or [])
    if now:
        os.chdir(context.settings().project)
        event = _agent(lease_ttl_s=60.0, deliver=True, on_event=_log_line).run_now(
            name, reason, params
        )
        if event.status == "failed":
            raise typer.Exit(1)
        return
    event = request_run(_loop_store(), declared, reason, params=params, by=_who())
    context.console().print(
        f"event {event.id}: {name} pending; the next agent pass runs it", highlight=False
    )


@triggers_app.command("list")
def list_triggers(as_json: bool = _JSON) -> None:
    """The declared triggers: kind, source, last event, watermark and when each is next due."""
    from conveyor.automation.triggers import describe_next

    store = _loop_store()
    now = datetime.now(UTC)
    rows = []
    for t in _triggers():
        last = store.list_trigger_events(t.name, limit=1)
        state = store.get_state(t.watermark_key)
        rows.append(
            {
                "name": t.name,
                "kind": t.kind,
                "pipeline": t.pipeline,
                "source": _source(t),
                "cooldown_s": t.cooldown_s,
                "max_concurrent": t.max_concurrent,
                "last_event": _event_dict(last[0]) if last else None,
                "watermark": state,
                "next_due": describe_next(t, state, now),
            }
        )
    if as_json:
        context.print_json(rows)
        return
    _print_triggers(rows)


@triggers_app.command("history")
def history(
    name: str = typer.Argument(None, help="Only this trigger's events."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="The newest N events."),
    as_json: bool = _JSON,
) -> None:
    """Trigger events, oldest first: why each fired, the run it started, or why it did not."""
    events = _loop_store().list_trigger_events(name, limit=limit)
    if as_json:
        context.print_json([_event_dict(e) for e in events])
        return
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, header_style="bold", title="trigger events")
    for col in ("id", "when", "trigger", "kind", "status", "run"):
        table.add_column(col, no_wrap=True)
    table.add_column("reason", overflow="fold", max_width=60)
    for e in events:
        status = f"[{_STYLE.get(e.status, 'white')}]{e.status}[/]"
        reason = escape(e.reason + _why(e))
        table.add_row(
            str(e.id), _when(e.created_at), e.trigger, e.kind, status, (e.run_id or "")[:8], reason
        )
    context.console().print(table)


# -- wiring ------------------------------------------------------------------------------


def _triggers() -> list[TriggerConfig]:
    from conveyor.automation import parse_triggers

    s = context.settings()
    return parse_triggers(s.extra.get("triggers"), base_dir=s.project)


def _declared(name: str) -> TriggerConfig:
    from conveyor.errors import NotFoundError

    found = {t.name: t for t in _triggers()}
    if name not in found:
        known = ", ".join(found) or "none (add a triggers: list to conveyor.yaml)"
        raise NotFoundError(f"no trigger {name!r} is declared; declared: {known}")
    return found[name]


def _loop_store() -> LoopStore:
    from conveyor.stores.backends import open_loop_store

    return open_loop_store(context.settings().metadata_uri)


def _agent(*, lease_ttl_s: float, deliver: bool, on_event: Any) -> Agent:
    from conveyor.automation import Agent, PipelineRunner
    from conveyor.automation.handoff import PolicyDelivery
    from conveyor.cli import models
    from conveyor.cli.run import load_pipeline
    from conveyor.errors import ConfigError

    triggers = _triggers()
    if not triggers:
        raise ConfigError("triggers: none declared in conveyor.yaml; add a triggers: list")
    store = _loop_store()
    registry = models.registry()
    hand_off = None
    if deliver:
        from conveyor.delivery import parse_deployments

        policies = parse_deployments(context.settings().extra.get("deployments"))
        hand_off = PolicyDelivery(registry, store, policies)
    return Agent(
        triggers,
        loop_store=store,
        run_pipeline=PipelineRunner(load_pipeline, context.tracker(), registry=registry),
        on_new_version=hand_off,
        lease_ttl_s=lease_ttl_s,
        on_event=on_event,
    )


def _params(declared: TriggerConfig, pairs: list[str]) -> dict[str, Any]:
    if not pairs:
        return {}
    from conveyor.cli.run import _pairs, load_pipeline

    return load_pipeline(declared.pipeline).parse_params(_pairs(pairs))


def _who() -> str:
    from conveyor.cli.models import actor

    return actor(None)


# -- output ------------------------------------------------------------------------------


def _log_line(event: TriggerEvent) -> None:
    from rich.markup import escape

    style = _STYLE.get(event.status, "white")
    run = f" run {event.run_id[:8]}" if event.run_id else ""
    delivery = event.detail.get("delivery")
    said = f" — {'; '.join(delivery.values())}" if isinstance(delivery, dict) else ""
    context.console().print(
        f"{datetime.now(UTC):%H:%M:%S} {escape(event.trigger)} {event.kind} "
        f"[{style}]{event.status}[/]{run}: {escape(event.reason + _why(event) + said)}",
        highlight=False,
    )


def _why(event: TriggerEvent) -> str:
    d = event.detail
    for key in ("why", "abandoned", "error"):
        if d.get(key):
            return f" ({d[key]})"
    attempts = d.get("attempts") or []
    if d.get("retry_in_s") is not None and event.status == "running" and attempts:
        error = attempts[-1].get("error")
        return f" (attempt {len(attempts)} failed: {error}; retry in {d['retry_in_s']:g}s)"
    return ""


def _source(t: TriggerConfig) -> str:
    if t.schedule is not None:
        return f"cron {t.schedule.expression}"
    if t.data_path is not None:
        return f"files {t.data_path}"
    if t.data_sql is not None:
        return f"sql {t.data_sql}"
    if t.alert_monitor is not None:
        rule = f" rule {t.alert_rule}" if t.alert_rule else " asking to retrain"
        return f"alerts of {t.alert_monitor}{rule}"
    return "by hand"


def _event_dict(e: TriggerEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "trigger": e.trigger,
        "pipeline": e.pipeline,
        "kind": e.kind,
        "reason": e.reason,
        "status": e.status,
        "run_id": e.run_id,
        "detail": e.detail,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    }


def _watermark(kind: str, state: str | None) -> str:
    if state is None:
        return "-"
    if kind == "data" and state.startswith("{"):
        seen = json.loads(state)
        newest = datetime.fromtimestamp(seen.get("mtime_ns", 0) / 1e9, tz=UTC)
        return f"{len(seen.get('names', []))} file(s), newest {newest:%Y-%m-%d %H:%M}"
    if kind == "alert":
        return f"after alert {state}"
    return state


def _print_triggers(rows: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, header_style="bold", title="triggers")
    for col in ("name", "kind", "source", "last event", "watermark", "next due"):
        table.add_column(col, overflow="fold")
    for r in rows:
        last = r["last_event"]
        said = "-"
        if last:
            style = _STYLE.get(last["status"], "white")
            said = (
                f"{_when(last['created_at'])} [{style}]{last['status']}[/] {escape(last['reason'])}"
            )
        table.add_row(
            r["name"],
            r["kind"],
            escape(r["source"]),
            said,
            escape(_watermark(r["kind"], r["watermark"])),
            escape(r["next_due"]),
        )
    context.console().print(table)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
