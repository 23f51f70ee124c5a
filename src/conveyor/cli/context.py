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


def resolve_run_id(prefix: str) -> str:
    """A full run id from the id itself or a unique prefix of at least 6 characters.

    Raises:
        ValidationError: the prefix is too short or matches several runs.
        NotFoundError: no run id starts with it.
    """
    from conveyor.errors import NotFoundError, ValidationError

    if len(prefix) < 6:
        raise ValidationError("run id", "give the full id or a prefix of at least 6 characters")
    found = find_run_ids(prefix)
    if not found:
        raise NotFoundError(f"no run id starts with {prefix!r}")
    if len(found) > 1:
        raise ValidationError("run id", f"prefix {prefix!r} matches several runs; give more of it")
    return found[0]


def find_run_ids(prefix: str, limit: int = 2) -> list[str]:
    """Up to ``limit`` run ids that start with ``prefix`` (hex digits only; none otherwise)."""
    text = prefix.lower()
    if not text or any(c not in "0123456789abcdef" for c in text) or len(text) > 32:
        return []
    found = tracker().search_runs(filter=f"attributes.run_id LIKE '{text}%'", max_results=limit)
    assert isinstance(found, list)
    return [run.id for run in found]
