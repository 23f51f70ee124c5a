"""``conveyor models``: list and show registered models, move aliases, read and reverse moves."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli import context

if TYPE_CHECKING:
    from conveyor.core.registry import AliasEvent, ModelVersion, RegisteredModel
    from conveyor.registry import Registry

app = typer.Typer(help="Registered models, their versions and aliases.", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")
_ACTOR = typer.Option(
    None, "--actor", help="Who is acting (default: CONVEYOR_ACTOR, else your user name)."
)


@lru_cache(maxsize=1)
def registry() -> Registry:
    """A registry over the configured stores (opening them migrates)."""
    from conveyor.registry import Registry
    from conveyor.stores.backends import open_artifact_store, open_model_store

    s = context.settings()
    return Registry(open_model_store(s.metadata_uri), open_artifact_store(s.artifact_uri))


def actor(given: str | None) -> str:
    """Who moves an alias: ``--actor``, else ``CONVEYOR_ACTOR``, else the user name."""
    import os

    from conveyor.registry.registry import default_actor

    return given or os.environ.get("CONVEYOR_ACTOR") or default_actor()


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- as JSON ---------------------------------------------------------------


def model_dict(model: RegisteredModel) -> dict[str, Any]:
    """A model as plain JSON-able data."""
    return {
        "name": model.name,
        "latest_version": model.latest_version,
        "aliases": dict(model.aliases),
        "description": model.description,
        "tags": dict(model.tags),
        "created_at": model.created_at,
        "updated_at": model.updated_at,
    }


def version_dict(version: ModelVersion) -> dict[str, Any]:
    """A version as plain JSON-able data."""
    return {
        "name": version.name,
        "version": version.version,
        "format": version.format,
        "trusted": version.trusted,
        "created_at": version.created_at,
        "run_id": version.run_id,
        "description": version.description,
        "tags": dict(version.tags),
        "metrics": dict(version.metrics),
        "git_sha": version.source.git_sha,
        "diff_hash": version.source.diff_hash,
        "data_digests": dict(version.data_digests),
        "signature": version.signature.to_dict(),
        "environment": version.environment.to_dict(),
        "manifest_sha256": version.manifest_sha256,
        "files": dict(version.files),
        "profile_sha256": version.profile_sha256,
    }


def event_dict(event: AliasEvent) -> dict[str, Any]:
    """An alias event as plain JSON-able data."""
    return {
        "id": event.id,
        "name": event.name,
        "alias": event.alias,
        "action": event.action.value,
        "from_version": event.from_version,
        "to_version": event.to_version,
        "actor": event.actor,
        "reason": event.reason,
        "created_at": event.created_at,
    }


# -- commands --------------------------------------------------------------


@app.command("list")
def list_models(as_json: bool = _JSON) -> None:
    """List registered models with their newest version and aliases."""
    found = registry().list_models()
    if as_json:
        context.print_json([model_dict(m) for m in found])
        return
    from rich import box
    from rich.table import Table

    table = Table(title=f"{len(found)} model(s)", header_style="bold", box=box.SIMPLE_HEAD)
    for col in ("name", "latest", "aliases", "updated (UTC)", "description"):
        table.add_column(col, overflow="fold")
    for m in found:
        aliases = ", ".join(f"{a}→{v}" for a, v in m.aliases.items()) or "-"
        table.add_row(
            m.name, str(m.latest_version), aliases, _when(m.updated_at), m.description or ""
        )
    context.console().print(table)


@app.command("show")
def show(
    ref: str = typer.Argument(..., metavar="NAME[/VERSION|@ALIAS]", help="A model or a version."),
    as_json: bool = _JSON,
) -> None:
    """Show a model and its versions, or one version (NAME/3, NAME@production) in full."""
    reg = registry()
    if "/" in ref or "@" in ref:
        version = reg.resolve(ref)
        if as_json:
            context.print_json(version_dict(version))
        else:
            _print_version(version)
        return
    model = reg.get_model(ref)
    versions = reg.list_versions(ref)
    if as_json:
        context.print_json(model_dict(model) | {"versions": [version_dict(v) for v in versions]})
        return
    _print_model(model, versions)


def _print_model(model: RegisteredModel, versions: list[ModelVersion]) -> None:
    from rich.table import Table

    con = context.console()
    con.print(f"[bold]{model.name}[/]  {model.description or ''}")
    aliases = ", ".join(f"{a} → {v}" for a, v in model.aliases.items()) or "none"
    con.print(f"aliases: {aliases}")
    if model.tags:
        con.print("tags: " + ", ".join(f"{k}={v}" for k, v in sorted(model.tags.items())))
    table = Table(header_style="bold", title="versions", title_justify="left")
    for col in ("version", "format", "created (UTC)", "run", "metrics", "aliases"):
        table.add_column(col, overflow="fold")
    by_version: dict[int, list[str]] = {}
    for alias, number in model.aliases.items():
        by_version.setdefault(number, []).append(alias)
    for v in versions:
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())[:3])
        table.add_row(
            str(v.version),
            v.format + (" (trusted)" if v.trusted else ""),
            _when(v.created_at),
            (v.run_id or "-")[:8],
            metrics or "-",
            ", ".join(by_version.get(v.version, [])),
        )
    con.print(table)


def _print_version(v: ModelVersion) -> None:
    from rich.table import Table

    con = context.console()
    trusted = "  [yellow]trusted (runs code on load)[/]" if v.trusted else ""
    con.print(f"[bold]{v.ref}[/]  format {v.format}{trusted}  created {_when(v.created_at)} UTC")
    dirty = " (dirty)" if v.source.dirty else ""
    con.print(f"run {v.run_id or '-'}, git {v.source.git_sha or '-'}{dirty}")
    con.print(f"manifest sha256:{v.manifest_sha256}")
    if v.description:
        con.print(v.description)
    sections: list[tuple[str, dict[str, Any]]] = [
        ("metrics", {k: f"{val:.6g}" for k, val in v.metrics.items()}),
        ("tags", dict(v.tags)),
        ("data", dict(v.data_digests)),
        ("environment", {"python": v.environment.python, **v.environment.packages}),
        ("signature", _signature_rows(v)),
    ]
    for title, rows in sections:
        table = Table(title=title, header_style="bold", title_justify="left", show_header=False)
        table.add_column("key", style="bold")
        table.add_column("value", overflow="fold")
        for key, value in rows.items():
            table.add_row(key, str(value))
        con.print(table)


def _signature_rows(v: ModelVersion) -> dict[str, Any]:
    sig = v.signature
    if sig.kind == "tensor":
        shape = ", ".join("rows" if d is None else str(d) for d in sig.shape or ())
        return {"array": f"{sig.dtype} ({shape})"}
    rows = {}
    for c in sig.columns:
        extra = " nullable" if c.nullable else ""
        if c.categories is not None:
            extra += " {" + ", ".join(map(str, c.categories[:8])) + "}"
        rows[c.name] = c.dtype + extra
    return rows


@app.command("alias")
def alias(
    name: str = typer.Argument(..., help="The model."),
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="e.g. staging, production."),
    version: int = typer.Argument(..., help="The version the alias should point at."),
    reason: str = typer.Option(..., "--reason", "-r", help="Why (kept in the audit history)."),
    who: str = _ACTOR,
    as_json: bool = _JSON,
    force: bool = typer.Option(
        False,
        "--force",
        help="Move a delivery stage (staging, production…) past its deployment policy's "
        "checks and approvals; recorded as forced.",
    ),
) -> None:
    """Point an alias at a version; the move is an audited event that `rollback` reverses.

    The stages of the model's deployment policy (``staging`` and ``production`` by
    default, ``deployments:`` in conveyor.yaml) move only through ``conveyor deploy``
    and ``conveyor approve``, which run the CD checks; ``--force`` overrides that, on
    the record.

    Example: conveyor models alias flights challenger 3 --reason "best of the June runs"
    """
    from conveyor.delivery.policy import parse_deployments, policy_for

    policy = policy_for(parse_deployments(context.settings().extra.get("deployments")), name)
    if alias_name in policy.stages:
        if not force:
            from conveyor.errors import StateError

            raise StateError(
                f"{alias_name} is a delivery stage of {name}: move it with conveyor deploy "
                f"{name}/{version} --to {alias_name} (the CD checks"
                + (", then conveyor approve" if policy.stage(alias_name).requires_approval else "")
                + "), or pass --force to move it past the policy, on the record"
            )
        reason = f"forced past the deployment policy: {reason}"
    event = registry().set_alias(name, alias_name, version, reason=reason, actor=actor(who))
    print_event(event, as_json)


@app.command("delete-alias")
def delete_alias(
    name: str = typer.Argument(..., help="The model."),
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="The alias to remove."),
    reason: str = typer.Option(..., "--reason", "-r", help="Why (kept in the audit history)."),
    who: str = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """Remove an alias (an audited event that `rollback` reverses)."""
    event = registry().delete_alias(name, alias_name, reason=reason, actor=actor(who))
    print_event(event, as_json)


@app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="The model."),
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="The alias to move back."),
    reason: str = typer.Option(..., "--reason", "-r", help="Why (kept in the audit history)."),
    who: str = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """Move an alias back to the version it pointed at before its last move."""
    event = registry().rollback(name, alias_name, reason=reason, actor=actor(who))
    print_event(event, as_json)


def print_event(event: AliasEvent, as_json: bool) -> None:
    """An alias move as one line (``flights@production: 3 → 4  (set by alice)``) or JSON."""
    if as_json:
        context.print_json(event_dict(event))
        return
    before = "(none)" if event.from_version is None else str(event.from_version)
    after = "(removed)" if event.to_version is None else str(event.to_version)
    context.console().print(
        f"{event.name}@{event.alias}: {before} → {after}  ({_DONE[event.action.value]} by "
        f"{event.actor})"
    )


_DONE = {"set": "set", "delete": "removed", "rollback": "rolled back"}


@app.command("history")
def history(
    name: str = typer.Argument(..., help="The model."),
    alias_name: str = typer.Option(None, "--alias", "-a", help="Only this alias."),
    as_json: bool = _JSON,
) -> None:
    """Every alias move of a model: when, who, why, from which version to which."""
    events = registry().history(name, alias_name)
    if as_json:
        from conveyor.cli.deploy import event_checks  # the delivery checks behind each move

        context.print_json([event_dict(e) | event_checks(e) for e in events])
        return
    from rich import box
    from rich.table import Table

    table = Table(title=f"{name}: {len(events)} alias event(s)", box=box.SIMPLE_HEAD)
    for col in ("when (UTC)", "alias", "action", "from", "to", "actor", "reason"):
        table.add_column(col, overflow="fold")
    for e in events:
        table.add_row(
            _when(e.created_at),
            e.alias,
            e.action.value,
            "-" if e.from_version is None else str(e.from_version),
            "-" if e.to_version is None else str(e.to_version),
            e.actor,
            e.reason or "",
        )
    context.console().print(table)
