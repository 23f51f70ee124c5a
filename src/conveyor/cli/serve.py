"""``conveyor serve REF [REF...]``: serve registered models over HTTP with uvicorn."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from starlette.applications import Starlette

_REFS_ENV = "CONVEYOR_SERVE_REFS"


def serve(
    refs: list[str] = typer.Argument(
        ..., help="What to serve: name@alias (follows the alias), name/3 or name."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="The address to bind."),
    port: int = typer.Option(8080, "--port", help="The port to bind."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    max_body_bytes: int = typer.Option(
        10_000_000, "--max-body-bytes", help="The largest request body (413 above it)."
    ),
) -> None:
    """Serve models: Open Inference V2, KServe V1 and MLflow /invocations, plus /metrics.

    Example: conveyor serve flights@production --port 8080
    """
    import uvicorn

    os.environ[_REFS_ENV] = json.dumps({"refs": refs, "max_body_bytes": max_body_bytes})
    if workers == 1:
        uvicorn.run(app_from_env(), host=host, port=port, log_level="info")
    else:
        uvicorn.run(
            "conveyor.cli.serve:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
        )


def app_from_env() -> Starlette:
    """The serving app for the refs `serve` put in the environment (one per worker)."""
    from conveyor.cli.models import registry
    from conveyor.serving import create_app

    spec = json.loads(os.environ[_REFS_ENV])
    return create_app(registry(), list(spec["refs"]), max_body_bytes=int(spec["max_body_bytes"]))
