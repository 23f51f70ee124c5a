"""``conveyor build REF`` and ``conveyor k8s REF``: a version's Docker context and k8s manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from conveyor.cli import context


def build(
    ref: str = typer.Argument(..., help="The version: name@alias, name/3 or name."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="The context folder (default build/<name>-<alias>)."
    ),
    port: int | None = typer.Option(None, "--port", help="The port the server listens on."),
    wheel: list[Path] = typer.Option(
        [], "--wheel", help="A wheel to install from (conveyor's own if no index has it)."
    ),
) -> None:
    """Write a Dockerfile and build context from the version's environment lock.

    Same Python, same package versions, a non-root user, a health check, and the
    model package copied in, verified. Example: conveyor build flights@production
    """
    from conveyor.cli.models import registry
    from conveyor.delivery.containers import DeploymentSpec, write_build_context

    spec = DeploymentSpec.declared(_deployments(), ref, port=port)
    folder = output if output is not None else Path("build") / _slug(ref)
    built = write_build_context(registry(), ref, folder, port=spec.port, wheels=wheel)
    con = context.console()
    con.print(
        f"wrote the build context of [bold]{built.version.name}/{built.version.version}[/] "
        f"({ref}) to [bold]{folder}[/]: {len(built.files)} files; it serves {built.serve_ref}"
    )
    con.print(f"next: [bold]docker build -t {built.image} {folder}[/]")


def k8s(
    ref: str = typer.Argument(..., help="The version: name@alias, name/3 or name."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="The manifests' folder (default k8s/<name>-<alias>)."
    ),
    image: str | None = typer.Option(
        None, "--image", help="The image to run (default conveyor-<name>:<version>)."
    ),
    replicas: int | None = typer.Option(None, "--replicas", help="Replicas (the HPA minimum)."),
    max_replicas: int | None = typer.Option(None, "--max-replicas", help="The HPA maximum."),
    port: int | None = typer.Option(None, "--port", help="The container's port."),
) -> None:
    """Write Kubernetes Deployment, Service and HorizontalPodAutoscaler manifests.

    Probes hit the Open Inference V2 health endpoints; replicas and resources come
    from conveyor.yaml's ``deployments`` section, then these options.
    Example: conveyor k8s flights@production --replicas 3
    """
    from conveyor.cli.models import registry
    from conveyor.core.registry import ModelRef
    from conveyor.delivery.containers import (
        DeploymentSpec,
        kubernetes_manifests,
        write_manifests,
    )

    spec = DeploymentSpec.declared(
        _deployments(), ref, replicas=replicas, max_replicas=max_replicas, port=port
    )
    version = registry().resolve(ref)
    chosen = image or f"conveyor-{_slug(version.name)}:{version.version}"
    alias = ModelRef.parse(ref).alias
    manifests = kubernetes_manifests(version, chosen, spec, alias=alias)
    folder = output if output is not None else Path("k8s") / _slug(ref)
    written = write_manifests(manifests, folder)
    _table(manifests, written)
    context.console().print(f"next: [bold]kubectl apply -f {folder}[/]")


def _deployments() -> Any:
    return context.settings().extra.get("deployments")


def _slug(ref: str) -> str:
    return ref.replace("@", "-").replace("/", "-v").lower()


def _table(manifests: list[dict[str, Any]], written: list[Path]) -> None:
    from rich.table import Table

    table = Table(title="manifests")
    for column in ("kind", "name", "file"):
        table.add_column(column)
    for manifest, path in zip(manifests, written, strict=True):
        table.add_row(manifest["kind"], manifest["metadata"]["name"], str(path))
    context.console().print(table)
