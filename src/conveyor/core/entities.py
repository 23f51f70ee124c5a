"""The nouns of tracking as plain, immutable data: experiments, runs, metrics, artifacts, lineage.

Times are epoch milliseconds (``int``), as MLflow users expect.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "ArtifactRecord",
    "Experiment",
    "LineageEdge",
    "Metric",
    "Run",
    "RunStatus",
    "SourceVersion",
]


class RunStatus(enum.StrEnum):
    """Where a run is in its life. Only ``RUNNING`` is not final."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_final(self) -> bool:
        """Whether the run has ended."""
        return self is not RunStatus.RUNNING


@dataclass(frozen=True, slots=True)
class Experiment:
    """A named group of runs."""

    id: int
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Metric:
    """One point of a metric's history."""

    key: str
    value: float
    step: int
    timestamp: int

    def __eq__(self, other: object) -> bool:
        # NaN is a legitimate metric value (a diverged loss); two NaN points are the same point.
        if not isinstance(other, Metric):
            return NotImplemented
        same_value = self.value == other.value or (
            math.isnan(self.value) and math.isnan(other.value)
        )
        return (self.key, self.step, self.timestamp) == (
            other.key,
            other.step,
            other.timestamp,
        ) and same_value

    def __hash__(self) -> int:
        return hash((self.key, self.step, self.timestamp))


@dataclass(frozen=True, slots=True)
class SourceVersion:
    """The code a run came from: a git commit and a hash of the uncommitted diff."""

    git_sha: str | None = None
    diff_hash: str | None = None

    @property
    def dirty(self) -> bool:
        """Whether the working tree had uncommitted changes."""
        return self.diff_hash is not None


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """A file logged to a run: its run-relative path and the content it points at."""

    run_id: str
    path: str
    sha256: str
    size: int
    media_type: str
    created_at: int

    @property
    def uri(self) -> str:
        """A stable address of this artifact, independent of where the bytes live."""
        return f"runs:/{self.run_id}/{self.path}"


@dataclass(frozen=True, slots=True)
class LineageEdge:
    """An artifact consumed (``input``) or produced (``output``) by a run."""

    run_id: str
    sha256: str
    direction: str  # "input" | "output"
    name: str = ""


def _no_history(key: str) -> list[Metric]:
    return []


@dataclass(frozen=True, slots=True)
class Run:
    """A run as read back from the metadata store.

    ``metrics`` holds the latest value of each metric (highest step, then latest
    timestamp); ``metric_history(key)`` reads every point.
    """

    id: str
    experiment_id: int
    name: str
    status: RunStatus
    start_time: int
    end_time: int | None = None
    parent_run_id: str | None = None
    heartbeat_at: int | None = None
    source: SourceVersion = SourceVersion()
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    artifacts: tuple[ArtifactRecord, ...] = ()
    history_loader: Callable[[str], list[Metric]] = field(
        default=_no_history, repr=False, compare=False
    )

    def metric_history(self, key: str) -> list[Metric]:
        """Every logged point of metric ``key``, ordered by step then timestamp."""
        return self.history_loader(key)

    @property
    def duration_ms(self) -> int | None:
        """Wall time of the run, once it has ended."""
        return None if self.end_time is None else self.end_time - self.start_time
