"""``conveyor db``: the metadata store's schema and contents."""

from __future__ import annotations

import typer

from conveyor.cli import context

app = typer.Typer(help="The metadata database.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Bring the metadata store to the current schema (safe to run any time)."""
    from conveyor.stores.backends import open_metadata_store

    store = open_metadata_store(context.settings().metadata_uri)
    info = store.info()
    did = getattr(store, "migrated", False)
    verb = "migrated to" if did else "already at"
    context.console().print(f"{info['url']}: {verb} revision {info['revision']}")


@app.command("info")
def info(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Where the stores are, the schema revision, and how many rows each table holds."""
    from rich.table import Table

    s = context.settings()
    data = context.tracker().runs.info()
    data["artifact_uri"] = s.artifact_uri
    data["project"] = str(s.project)
    if as_json:
        context.print_json(data)
        return
    table = Table(show_header=False, title="conveyor store", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key in ("project", "backend", "url", "artifact_uri", "revision"):
        table.add_row(key, str(data[key]))
    for name, count in data["rows"].items():
        table.add_row(f"rows: {name}", f"{count:,}")
    context.console().print(table)
