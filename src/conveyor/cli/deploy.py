"""``conveyor deploy / approve / rollback / canary``: move versions through their policy's gates.

The policy of each model comes from the ``deployments:`` section of
``conveyor.yaml`` (staged promotion with approval for production when absent).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli import context
from conveyor.cli.models import actor, registry

if TYPE_CHECKING:
    from conveyor.core.loop import CheckRecord
    from conveyor.core.registry import AliasEvent
    from conveyor.delivery import CanaryDecision, DeliveryResult, DeploymentPolicy, Holdout
    from conveyor.stores.metadata.loop import LoopStore

canary_app = typer.Typer(help="Canaries: a share of an alias's traffic to a new version.")

_JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")
_ACTOR = typer.Option(
    None, "--actor", help="Who is acting (default: CONVEYOR_ACTOR, else your user name)."
)
_REF = typer.Argument(..., metavar="NAME/VERSION", help="The version, e.g. flights/7.")


@lru_cache(maxsize=1)
def loop_store() -> LoopStore:
    """The closed loop's store in the configured metadata database."""
    from conveyor.stores.backends import open_loop_store

    return open_loop_store(context.settings().metadata_uri)


def policy(model: str) -> DeploymentPolicy:
    """The model's deployment policy from ``conveyor.yaml`` (the default when absent)."""
    from conveyor.delivery import parse_deployments, policy_for

    return policy_for(parse_deployments(context.settings().extra.get("deployments")), model)


def _model_of(ref: str) -> str:
    from conveyor.core.registry import ModelRef

    return ModelRef.parse(ref).name


def _holdout(path: Path | None, target: str | None) -> Holdout | None:
    from conveyor.errors import ValidationError

    if path is None:
        if target is not None:
            raise ValidationError("--target", "needs --holdout")
        return None
    if target is None:
        raise ValidationError("--target", "names the label column of --holdout; it is required")
    if not path.is_file():
        raise ValidationError("--holdout", f"{path} is not a file")
    import pandas as pd

    from conveyor.delivery import Holdout

    frame = pd.read_parquet(path)
    if target not in frame.columns:
        raise ValidationError("--target", f"{target!r} is not a column of {path}")
    return Holdout(frame.drop(columns=[target]), frame[target], name=path.name)


# -- output ----------------------------------------------------------------------------------


def result_dict(result: DeliveryResult) -> dict[str, Any]:
    """A deploy's result as plain JSON-able data."""
    return {
        "model": result.model,
        "version": result.to_version,
        "stage": result.stage,
        "attempt": result.attempt,
        "passed": result.passed,
        "moved": result.moved,
        "pending_approval": result.pending_approval,
        "canary_started": result.canary_started,
        "from_version": result.from_version,
        "to_version": result.to_version,
        "event_id": result.event_id,
        "message": result.message,
        "checks": [
            {"name": c.name, "passed": c.passed, "detail": c.detail, "evidence": c.evidence}
            for c in result.checks
        ],
    }


def record_dict(record: CheckRecord) -> dict[str, Any]:
    """A stored check as plain JSON-able data."""
    return {
        "name": record.name,
        "passed": record.passed,
        "stage": record.stage,
        "version": record.version,
        "attempt": record.attempt,
        "detail": record.detail,
        "evidence": record.evidence,
        "created_at": record.created_at,
    }


def event_checks(event: AliasEvent) -> dict[str, Any]:
    """The checks behind an alias event (for ``conveyor models history --json``)."""
    from conveyor.delivery.promotion import checks_behind

    return {
        "checks": [record_dict(r) for r in checks_behind(loop_store(), event.name, event.reason)]
    }


def _print_result(result: DeliveryResult, as_json: bool) -> None:
    if as_json:
        context.print_json(result_dict(result))
        return
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    title = f"{result.ref} → {result.stage}  (attempt {result.attempt})"
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in result.checks:
        verdict = "[green]pass[/]" if check.passed else "[bold red]FAIL[/]"
        table.add_row(check.name, verdict, escape(check.detail))
    con = context.console()
    if result.checks:
        con.print(table)
    style = "green" if result.moved or result.canary_started else "yellow"
    if not result.passed:
        style = "bold red"
    con.print(f"[{style}]{escape(result.message)}[/]")


# -- commands --------------------------------------------------------------------------------


def deploy(
    ref: str = _REF,
    to: str = typer.Option(..., "--to", help="The stage (alias): staging, production…"),
    reason: str = typer.Option(None, "--reason", "-r", help="Why (kept with the move)."),
    holdout: Path = typer.Option(
        None, "--holdout", help="A Parquet file of labelled rows for the quality check."
    ),
    target: str = typer.Option(None, "--target", help="The label column of --holdout."),
    who: str = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """Run the CD checks for a version and move the stage's alias if they pass.

    Example: conveyor deploy flights/7 --to staging
    """
    from conveyor.delivery import deploy as run_deploy

    data = _holdout(holdout, target)
    result = run_deploy(
        ref, to, registry=registry(), loop_store=loop_store(), policy=policy(_model_of(ref)),
        actor=actor(who), reason=reason, holdout=data,
    )  # fmt: skip
    _print_result(result, as_json)
    if not result.passed:
        raise typer.Exit(1)


def approve(
    ref: str = _REF,
    to: str = typer.Option(..., "--to", help="The stage that needs the approval."),
    reason: str = typer.Option(..., "--reason", "-r", help="Why (recorded with the move)."),
    holdout: Path = typer.Option(
        None, "--holdout", help="Labelled rows for the quality check, if the checks must run."
    ),
    target: str = typer.Option(None, "--target", help="The label column of --holdout."),
    who: str = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """Approve a version that passed its checks for a stage, and move the alias.

    Example: conveyor approve flights/7 --to production --reason "AUC up on March"
    """
    from conveyor.delivery import approve as run_approve

    result = run_approve(
        ref, to, registry=registry(), loop_store=loop_store(), policy=policy(_model_of(ref)),
        actor=actor(who), reason=reason, holdout=_holdout(holdout, target),
    )  # fmt: skip
    _print_result(result, as_json)
    if not result.passed:
        raise typer.Exit(1)


def rollback(
    name: str = typer.Argument(..., help="The model."),
    alias: str = typer.Argument(..., help="The alias to move back, e.g. production."),
    reason: str = typer.Option(None, "--reason", "-r", help="Why (kept in the audit history)."),
    who: str = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """Move an alias back to its previous version (and stop a canary on it), in one step.

    Example: conveyor rollback flights production
    """
    from conveyor.cli.models import print_event
    from conveyor.delivery import rollback as run_rollback

    event = run_rollback(
        name, alias, registry=registry(), loop_store=loop_store(), actor=actor(who), reason=reason
    )
    print_event(event, as_json)


# -- canary ----------------------------------------------------------------------------------


@canary_app.command("start")
def canary_start(
    ref: str = _REF,
    alias: str = typer.Option("production", "--alias", help="The served alias to split."),
    share: float = typer.Option(None, "--share", help="The canary's share (policy's by default)."),
    reason: str = typer.Option("manual canary", "--reason", "-r", help="Why (recorded)."),
    who: str = _ACTOR,
) -> None:
    """Send a share of an alias's traffic to a version that passed its checks for it."""
    from conveyor.core.registry import ModelRef
    from conveyor.delivery import start_canary
    from conveyor.delivery.policy import CanaryPolicy

    version = registry().resolve(ref)
    chosen = share if share is not None else (policy(version.name).canary or CanaryPolicy()).share
    parsed = ModelRef.parse(ref)
    traffic = start_canary(
        parsed.name, version.version, alias=alias, share=chosen, loop_store=loop_store(),
        actor=actor(who), reason=reason,
    )  # fmt: skip
    context.console().print(
        f"canary {version.ref} on {alias}: {traffic.canary_share:.0%} of its requests"
    )


@canary_app.command("status")
def canary_status(
    name: str = typer.Argument(..., help="The model."),
    alias: str = typer.Option("production", "--alias", help="The served alias."),
    as_json: bool = _JSON,
) -> None:
    """Show the canary running on an alias, if any."""
    from conveyor.delivery import canary_status as status_of

    status = status_of(loop_store(), name, alias)
    if as_json:
        context.print_json(status)
        return
    if status is None:
        context.console().print(f"no canary runs on {name}@{alias}")
        return
    context.console().print(
        f"canary {name}/{status['version']} on {alias}: {status['share']:.0%} of requests "
        f"since {status['started_at']} (attempt {status['attempt']}, by {status['actor']})"
    )


@canary_app.command("evaluate")
def canary_evaluate(
    name: str = typer.Argument(..., help="The model."),
    alias: str = typer.Option("production", "--alias", help="The served alias."),
    who: str = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """Judge the canary on the capture log; promote or roll back once the policy says enough."""
    from conveyor.delivery import evaluate_canary

    reg = registry()
    decision = evaluate_canary(
        name, alias=alias, policy=policy(name), loop_store=loop_store(),
        byte_store=reg.artifacts.byte_store, registry=reg, actor=actor(who),
    )  # fmt: skip
    _print_decision(decision, as_json)


def _print_decision(decision: CanaryDecision, as_json: bool) -> None:
    if as_json:
        context.print_json(
            {
                "model": decision.model,
                "alias": decision.alias,
                "action": decision.action,
                "version": decision.version,
                "primary_version": decision.primary_version,
                "reasons": decision.reasons,
                "evidence": decision.evidence,
                "attempt": decision.attempt,
                "event_id": decision.event_id,
                "alert_id": decision.alert_id,
            }
        )
        return
    from rich.markup import escape

    con = context.console()
    con.print(f"[bold]{decision.action}[/] {decision.model}@{decision.alias}")
    for reason in decision.reasons:
        con.print(f"  {escape(reason)}")
