"""``conveyor serve [REF...]``: serve registered models over HTTP with uvicorn.

With no REF, the models listed in ``conveyor.yaml`` are served::

    serving:
      models:
        - ref: flights@production
        - ref: churn/3
      capture: {sample: 0.5, window_s: 60}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli import context

if TYPE_CHECKING:
    from starlette.applications import Starlette

_SPEC_ENV = "CONVEYOR_SERVE_REFS"


def serve(
    refs: list[str] | None = typer.Argument(
        None,
        help="What to serve: name@alias (follows the alias), name/3 or name. "
        "Default: serving.models in conveyor.yaml.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="The address to bind."),
    port: int = typer.Option(8080, "--port", help="The port to bind."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    max_body_bytes: int = typer.Option(
        10_000_000, "--max-body-bytes", help="The largest request body (413 above it)."
    ),
    capture: bool | None = typer.Option(
        None,
        "--capture/--no-capture",
        help="Write what is answered to the capture log (default: on, or serving.capture).",
    ),
    capture_sample: float | None = typer.Option(
        None, "--capture-sample", help="The share of requests captured, 0 to 1 (default 1)."
    ),
    capture_window: float | None = typer.Option(
        None, "--capture-window", help="Seconds between capture files (default 60)."
    ),
    access_log: bool = typer.Option(
        False,
        "--access-log/--no-access-log",
        help="Log a line per request (off by default: /metrics counts every request, and "
        "the log line costs about a sixth of a small request's CPU).",
    ),
) -> None:
    """Serve models: Open Inference V2, KServe V1 and MLflow /invocations, plus /metrics.

    Example: conveyor serve flights@production --port 8080
    """
    import uvicorn

    section = serving_section(context.settings().extra)
    spec = {
        "refs": list(refs) if refs else section["refs"],
        "max_body_bytes": max_body_bytes,
        "capture": section["capture"] if capture is None else capture,
        "capture_sample": section["capture_sample"] if capture_sample is None else capture_sample,
        "capture_window": section["capture_window"] if capture_window is None else capture_window,
    }
    if not spec["refs"]:
        from conveyor.errors import ConfigError

        raise ConfigError(
            "name a model to serve (conveyor serve flights@production) or list them in "
            "conveyor.yaml under serving: {models: [{ref: flights@production}]}"
        )
    app = app_from_spec(spec)  # loaded here, so a bad ref or option fails before binding
    os.environ[_SPEC_ENV] = json.dumps(spec)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)
    else:
        uvicorn.run(
            "conveyor.cli.serve:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=access_log,
        )


def serving_section(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The ``serving`` section of conveyor.yaml, checked (`ConfigError` naming the key)."""
    from conveyor.errors import ConfigError

    section = extra.get("serving") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("serving: must be a mapping with models (and capture)")
    models = section.get("models") or []
    if not isinstance(models, list):
        raise ConfigError("serving.models: must be a list of {ref: name@alias}")
    refs = []
    for i, item in enumerate(models):
        ref = item.get("ref") if isinstance(item, Mapping) else item
        if not isinstance(ref, str) or not ref:
            raise ConfigError(f"serving.models[{i}].ref: must be a model reference like a@b")
        refs.append(ref)
    cap = section.get("capture", {})
    if isinstance(cap, bool):
        cap = {"enabled": cap}
    if not isinstance(cap, Mapping):
        raise ConfigError("serving.capture: must be true, false or {sample, window_s}")
    sample, window = cap.get("sample", 1.0), cap.get("window_s", 60.0)
    if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 <= sample <= 1:
        raise ConfigError(f"serving.capture.sample: must be a number from 0 to 1, got {sample!r}")
    if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
        raise ConfigError(f"serving.capture.window_s: must be a positive number, got {window!r}")
    return {
        "refs": refs,
        "capture": bool(cap.get("enabled", True)),
        "capture_sample": float(sample),
        "capture_window": float(window),
    }


def app_from_spec(spec: Mapping[str, Any]) -> Starlette:
    """The serving app for a spec of `serve` (refs, body limit, capture options)."""
    from conveyor.cli.models import registry
    from conveyor.serving import create_app
    from conveyor.serving.capture import CaptureWriter
    from conveyor.stores.backends import open_loop_store

    reg = registry()
    writer = None
    if spec["capture"]:
        writer = CaptureWriter(
            reg.artifacts.byte_store,
            sample=float(spec["capture_sample"]),
            window_s=float(spec["capture_window"]),
        )
    return create_app(
        reg,
        list(spec["refs"]),
        max_body_bytes=int(spec["max_body_bytes"]),
        capture=writer,
        loop_store=open_loop_store(context.settings().metadata_uri),
    )


def app_from_env() -> Starlette:
    """The serving app for the spec `serve` put in the environment (one per worker)."""
    return app_from_spec(json.loads(os.environ[_SPEC_ENV]))
