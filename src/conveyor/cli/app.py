"""The ``conveyor`` command's entry point and its command groups.

Only typer and rich are imported to start; each command imports what it needs,
so ``conveyor --help`` stays well under half a second.
"""

from __future__ import annotations

import sys

import typer

from conveyor import __version__
from conveyor.cli import (
    agent,
    alerts,
    artifacts,
    build,
    ci,
    db,
    deploy,
    feedback,
    init,
    lineage,
    models,
    monitor,
    predict,
    run,
    runs,
    serve,
)

app = typer.Typer(
    name="conveyor",
    help=(
        "MLOps level 2 in one package: track, train, register, serve and monitor models.\n\n"
        "Settings come from CONVEYOR_* environment variables, then conveyor.yaml in the "
        "project, then defaults (.conveyor/conveyor.db and .conveyor/artifacts/)."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.command("init")(init.init)
app.command("run")(run.run)
app.command("serve")(serve.serve)
app.command("feedback")(feedback.feedback)
app.command("predict")(predict.predict)
runs.app.command("lineage")(lineage.lineage)
app.add_typer(runs.app, name="runs")
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(models.app, name="models")
app.add_typer(monitor.app, name="monitor")
app.add_typer(alerts.app, name="alerts")
app.add_typer(db.app, name="db")
app.command("gc")(artifacts.gc)
app.command("ci")(ci.ci)
app.command("build")(build.build)
app.command("k8s")(build.k8s)
app.command("agent")(agent.agent)
app.command("trigger")(agent.trigger)
app.add_typer(agent.triggers_app, name="triggers")
app.command("deploy")(deploy.deploy)
app.command("approve")(deploy.approve)
app.command("rollback")(deploy.rollback)
app.add_typer(deploy.canary_app, name="canary")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"conveyor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """MLOps level 2 in one package."""


def main() -> None:
    """Run the CLI; conveyor's own errors become one clear line and exit code 1."""
    from conveyor.errors import ConveyorError

    try:
        app()  # click turns usage errors into a message and exit code 2
    except ConveyorError as exc:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
