"""``conveyor artifacts`` and ``conveyor gc``: fetch, list and clean up stored files."""

from __future__ import annotations

from pathlib import Path

import typer

from conveyor.cli import context
from conveyor.cli.runs import _resolve, _size

app = typer.Typer(help="Files logged to runs.", no_args_is_help=True)


@app.command("ls")
def ls(
    run_id: str = typer.Argument(..., help="The run's id (a unique prefix works)."),
    prefix: str = typer.Argument("", help="Only paths under this folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List a run's artifacts."""
    records = context.tracker().list_artifacts(_resolve(run_id), prefix)
    if as_json:
        context.print_json(
            [
                {"path": a.path, "size": a.size, "sha256": a.sha256, "media_type": a.media_type}
                for a in records
            ]
        )
        return
    from rich.table import Table

    table = Table(header_style="bold", title=f"{len(records)} artifact(s)")
    for col in ("path", "size", "media type", "sha256"):
        table.add_column(col)
    for a in records:
        table.add_row(a.path, _size(a.size), a.media_type, a.sha256[:12])
    context.console().print(table)


@app.command("get")
def get(
    run_id: str = typer.Argument(..., help="The run's id (a unique prefix works)."),
    path: str = typer.Argument(..., help="A file or folder path inside the run's artifacts."),
    dest: Path = typer.Option(Path("."), "--dest", "-d", help="Folder to download into."),
) -> None:
    """Download an artifact (verified against its sha256) into a folder."""
    local = context.tracker().download_artifact(_resolve(run_id), path, dest)
    context.console().print(f"downloaded to {local}")


def gc(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be deleted."),
    min_age_hours: float = typer.Option(
        1.0,
        "--min-age-hours",
        help="Keep unreferenced files younger than this (uploads in flight).",
    ),
) -> None:
    """Delete stored files that no run, artifact, lineage or model version points at."""
    from conveyor.stores.backends import open_loop_store, open_model_store

    tracker = context.tracker()
    keep = tracker.runs.referenced_digests()
    models = open_model_store(context.settings().metadata_uri)
    try:
        keep |= models.referenced_digests()  # registered model packages
    finally:
        models.close()
    loop = open_loop_store(context.settings().metadata_uri)
    try:
        keep |= loop.referenced_digests()  # monitor reports, serving and prediction profiles
    finally:
        loop.close()
    doomed = tracker.artifacts.unreferenced(keep, min_age_hours * 3600)
    for digest in doomed:
        if not dry_run:
            tracker.artifacts.delete(digest.sha256)
    freed = sum(d.size for d in doomed)
    verb = "would delete" if dry_run else "deleted"
    context.console().print(f"{verb} {len(doomed)} unreferenced file(s), {_size(freed)}")
