"""The narrow interface every metadata backend implements for tracking.

Writes arrive in batches (`WriteBatch`) from the tracker's background writer;
each batch is applied in one transaction, so a point is either durable with
all the others of its batch or not at all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.core.entities import (
    ArtifactRecord,
    Experiment,
    LineageEdge,
    Metric,
    Run,
    RunStatus,
    SourceVersion,
)

__all__ = ["MetricRow", "NewRun", "RunStore", "WriteBatch"]

# (run_id, key, value, step, timestamp): a tuple, not an object, because the
# hot path appends one per log_metric call.
MetricRow = tuple[str, str, float, int, int]


@dataclass(frozen=True, slots=True)
class NewRun:
    """What is known of a run when it starts."""

    id: str
    experiment_id: int
    name: str
    start_time: int
    parent_run_id: str | None = None
    source: SourceVersion = field(default_factory=SourceVersion)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class WriteBatch:
    """Everything the writer gathered since its last commit, applied in one transaction.

    New runs are inserted first, so the rest of the batch may refer to them.
    """

    runs: list[NewRun] = field(default_factory=list)
    metrics: list[MetricRow] = field(default_factory=list)
    params: list[tuple[str, str, str]] = field(default_factory=list)
    tags: list[tuple[str, str, str]] = field(default_factory=list)
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    lineage: list[LineageEdge] = field(default_factory=list)
    ends: list[tuple[str, RunStatus, int]] = field(default_factory=list)
    heartbeats: list[tuple[str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.runs)
            + len(self.metrics)
            + len(self.params)
            + len(self.tags)
            + len(self.artifacts)
            + len(self.lineage)
            + len(self.ends)
            + len(self.heartbeats)
        )


class RunStore(ABC):
    """Experiments, runs and everything logged to them."""

    # -- experiments -------------------------------------------------------
    @abstractmethod
    def get_or_create_experiment(self, name: str) -> Experiment:
        """The experiment called ``name``, created if it does not exist (race-free)."""

    @abstractmethod
    def get_experiment(self, name: str) -> Experiment:
        """The experiment called ``name``; `NotFoundError` listing those that exist otherwise."""

    @abstractmethod
    def list_experiments(self) -> list[Experiment]:
        """Every experiment, oldest first."""

    # -- runs --------------------------------------------------------------
    @abstractmethod
    def create_run(self, run: NewRun) -> None:
        """Record a run as ``RUNNING`` with its first heartbeat, synchronously."""

    @abstractmethod
    def get_run(self, run_id: str) -> Run:
        """A run with its params, latest metrics, tags and artifacts."""

    @abstractmethod
    def write(self, batch: WriteBatch) -> None:
        """Apply a batch of params, metrics, tags, heartbeats and run ends in one transaction."""

    @abstractmethod
    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of a metric, ordered by step then timestamp."""

    @abstractmethod
    def search_runs(
        self,
        experiment_ids: Sequence[int] | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        offset: int = 0,
    ) -> list[Run]:
        """Runs matching a filter expression, ordered, paged."""

    @abstractmethod
    def reap(self, grace_ms: int, now_ms: int | None = None) -> list[str]:
        """Mark ``FAILED`` every ``RUNNING`` run whose heartbeat is older than the grace."""

    # -- artifacts and lineage ---------------------------------------------
    @abstractmethod
    def add_artifacts(self, records: Iterable[ArtifactRecord]) -> None:
        """Record files logged to runs (a path logged twice points at its newest content)."""

    @abstractmethod
    def list_artifacts(self, run_id: str, prefix: str = "") -> list[ArtifactRecord]:
        """A run's artifacts under a path prefix, by path."""

    @abstractmethod
    def get_artifact(self, run_id: str, path: str) -> ArtifactRecord:
        """One artifact of a run; `NotFoundError` naming the paths that exist otherwise."""

    @abstractmethod
    def add_lineage(self, edges: Iterable[LineageEdge]) -> None:
        """Record artifacts consumed and produced by runs (idempotent)."""

    @abstractmethod
    def lineage_of_run(self, run_id: str) -> list[LineageEdge]:
        """The inputs and outputs of a run."""

    @abstractmethod
    def lineage_of_artifact(self, sha256: str) -> list[LineageEdge]:
        """The runs that produced or consumed an artifact."""

    @abstractmethod
    def referenced_digests(self) -> set[str]:
        """Every sha256 some record points at (what garbage collection must keep)."""

    # -- housekeeping ------------------------------------------------------
    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Backend, URI (without password), schema revision and row counts."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
