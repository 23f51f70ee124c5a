"""Settings: ``CONVEYOR_*`` environment variables, then ``conveyor.yaml``, then defaults.

Read only at the edges (the CLI, the top-level API) and passed down as values.

| setting | env variable | default |
|---|---|---|
| metadata_uri | CONVEYOR_METADATA_URI | ``sqlite:///<project>/.conveyor/conveyor.db`` |
| artifact_uri | CONVEYOR_ARTIFACT_URI | ``<project>/.conveyor/artifacts`` |
| experiment | CONVEYOR_EXPERIMENT | ``Default`` |
| run_grace_seconds | CONVEYOR_RUN_GRACE_SECONDS | 30 |
| heartbeat_seconds | CONVEYOR_HEARTBEAT_SECONDS | 5 |

The project is the nearest folder, from the current one upwards, holding a
``conveyor.yaml``; without one, the current folder. Relative paths in
``conveyor.yaml`` are relative to the project.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError

__all__ = ["CONFIG_FILE", "Settings", "find_project", "load_settings"]

CONFIG_FILE = "conveyor.yaml"
_TRACKING_KEYS = (
    "metadata_uri",
    "artifact_uri",
    "experiment",
    "run_grace_seconds",
    "heartbeat_seconds",
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Where conveyor keeps things and how it behaves, resolved once."""

    project: Path
    metadata_uri: str
    artifact_uri: str
    experiment: str = "Default"
    run_grace_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def find_project(start: Path | None = None) -> Path:
    """The nearest folder holding ``conveyor.yaml``, from ``start`` upwards; else ``start``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return here


def load_settings(start: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings: environment over ``conveyor.yaml`` over defaults."""
    env = os.environ if env is None else env
    project = find_project(start)
    file_values = _read_yaml(project / CONFIG_FILE)
    values: dict[str, Any] = {
        "metadata_uri": f"sqlite:///{project / '.conveyor' / 'conveyor.db'}",
        "artifact_uri": str(project / ".conveyor" / "artifacts"),
    }
    for key in _TRACKING_KEYS:
        if key in file_values:
            values[key] = _from_file(project, key, file_values[key])
        env_key = f"CONVEYOR_{key.upper()}"
        if env.get(env_key):
            values[key] = env[env_key]
    extra = {k: v for k, v in file_values.items() if k not in _TRACKING_KEYS}
    return Settings(
        project=project,
        metadata_uri=_uri("metadata_uri", values["metadata_uri"]),
        artifact_uri=_uri("artifact_uri", values["artifact_uri"]),
        experiment=_nonempty("experiment", values.get("experiment", "Default")),
        run_grace_seconds=_seconds("run_grace_seconds", values.get("run_grace_seconds", 30)),
        heartbeat_seconds=_seconds("heartbeat_seconds", values.get("heartbeat_seconds", 5)),
        extra=extra,
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of settings, got {type(data).__name__}")
    return data


def _from_file(project: Path, key: str, value: Any) -> Any:
    # A relative sqlite path or artifact folder in the file means "in the project".
    if key == "artifact_uri" and isinstance(value, str) and "://" not in value:
        return str((project / value).resolve()) if not Path(value).is_absolute() else value
    if key == "metadata_uri" and isinstance(value, str) and value.startswith("sqlite:///"):
        path = value.removeprefix("sqlite:///")
        if path and not Path(path).is_absolute():
            return f"sqlite:///{(project / path).resolve()}"
    return value


def _uri(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{field}: must be a non-empty string, got {value!r}")
    return value.strip()


def _nonempty(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{field}: must be a non-empty string, got {value!r}")
    return value


def _seconds(field: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{field}: must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ConfigError(f"{field}: must be greater than 0, got {value!r}")
    return seconds
