"""What every command shares: settings, opened stores, and a console for output."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from conveyor.settings import Settings
    from conveyor.tracking.tracker import Tracker


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings in force for this invocation."""
    from conveyor.settings import load_settings

    return load_settings()


@lru_cache(maxsize=1)
def tracker() -> Tracker:
    """A tracker over the configured stores (opening them migrates and reaps)."""
    from conveyor.stores.backends import open_artifact_store, open_metadata_store
    from conveyor.tracking.tracker import Tracker

    s = settings()
    return Tracker(
        open_metadata_store(s.metadata_uri),
        open_artifact_store(s.artifact_uri),
        grace_seconds=s.run_grace_seconds,
        heartbeat_seconds=s.heartbeat_seconds,
    )


@lru_cache(maxsize=1)
def console() -> Console:
    """Where tables and messages go."""
    from rich.console import Console

    return Console()


def print_json(data: object) -> None:
    """Machine-readable output, one document."""
    import json

    print(json.dumps(data, indent=2, default=str, allow_nan=True))
