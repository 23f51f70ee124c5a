"""`Tracker` and `ActiveRun`: the tracking API over an explicit metadata and artifact store."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from conveyor.core.entities import (
    ArtifactRecord,
    Experiment,
    LineageEdge,
    Run,
    RunStatus,
    SourceVersion,
)
from conveyor.core.paths import normalize_artifact_path, safe_join
from conveyor.errors import StateError, ValidationError
from conveyor.stores.artifacts.content import (
    ContentAddressedStore,
    Digest,
    collect_upload,
    guess_media_type,
)
from conveyor.stores.metadata.base import NewRun, RunStore
from conveyor.tracking.source import detect_source
from conveyor.tracking.writer import BatchWriter

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ActiveRun", "Tracker"]

MAX_KEY = 250
MAX_PARAM_VALUE = 6000


def _now_ms() -> int:
    return int(time.time() * 1000)


class Tracker:
    """Starts runs and reads them back, over one metadata store and one artifact store.

    Args:
        runs: the metadata store.
        artifacts: the content-addressed artifact store.
        heartbeat_seconds: how often a live run proves it is alive.
        grace_seconds: how long a run may miss heartbeats before it reads ``FAILED``.
        reap: mark stale runs ``FAILED`` now (the "next use of the store").
    """

    def __init__(
        self,
        runs: RunStore,
        artifacts: ContentAddressedStore,
        *,
        heartbeat_seconds: float = 5.0,
        grace_seconds: float = 30.0,
        reap: bool = True,
    ) -> None:
        self.runs = runs
        self.artifacts = artifacts
        self.grace_seconds = grace_seconds
        self.writer = BatchWriter(runs, heartbeat_seconds=heartbeat_seconds)
        self._experiments: dict[str, Experiment] = {}
        self._started: set[str] = set()
        if reap:
            self.reap()

    # -- writing -----------------------------------------------------------
    def start_run(
        self,
        experiment: str = "Default",
        name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        source: SourceVersion | None = None,
        on_end: Callable[[ActiveRun], None] | None = None,
    ) -> ActiveRun:
        """Start a ``RUNNING`` run and return a handle to log to it.

        The run is written with the first batch (at once on `flush`); the checks that
        can fail (experiment name, tags, parent) happen here, before anything is buffered.
        """
        exp = self._experiment(experiment)
        if parent_run_id is not None and parent_run_id not in self._started:
            self.get_run(parent_run_id)  # NotFoundError now, not a failed batch later
        run_id = uuid.uuid4().hex
        clean_tags = {_key("tag", k): _text("tag", k, v) for k, v in (tags or {}).items()}
        new = NewRun(
            id=run_id,
            experiment_id=exp.id,
            name=name if name is not None else f"run-{run_id[:8]}",
            start_time=_now_ms(),
            parent_run_id=parent_run_id,
            source=source if source is not None else detect_source(Path.cwd()),
            tags=clean_tags,
        )
        self.writer.create(new)
        self._started.add(run_id)
        return ActiveRun(self, new, on_end)

    def _experiment(self, name: str) -> Experiment:
        # Experiments are never renamed or deleted, so a name resolves once per tracker.
        found = self._experiments.get(name)
        if found is None:
            found = self._experiments[name] = self.runs.get_or_create_experiment(name)
        return found

    def flush(self) -> None:
        """Make everything logged so far durable."""
        self.writer.flush()

    def reap(self) -> list[str]:
        """Mark ``FAILED`` the runs whose process stopped sending heartbeats."""
        return self.runs.reap(int(self.grace_seconds * 1000))

    # -- reading -----------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        """A run with its params, latest metrics, tags and artifacts.

        Reads through the tracker see everything logged through it before (it flushes).
        """
        self.writer.flush()
        return self.runs.get_run(run_id)

    def search_runs(
        self,
        experiment: str | Sequence[str] | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        offset: int = 0,
        *,
        as_frame: bool = False,
    ) -> list[Run] | pd.DataFrame:
        """Runs of the named experiments (all if None) that match ``filter``.

        Args:
            experiment: an experiment name or names.
            filter: e.g. ``"metrics.auc > 0.8 and params.lr = '0.1'"``.
            order_by: e.g. ``["metrics.auc DESC"]``.
            max_results: at most this many runs.
            offset: skip this many (paging).
            as_frame: return a DataFrame with ``metrics.*``, ``params.*``, ``tags.*`` columns.
        """
        self.writer.flush()
        names = [experiment] if isinstance(experiment, str) else experiment
        ids = None if names is None else [self.runs.get_experiment(n).id for n in names]
        found = self.runs.search_runs(ids, filter, order_by, max_results, offset)
        return runs_frame(found) if as_frame else found

    def list_artifacts(self, run_id: str, prefix: str = "") -> list[ArtifactRecord]:
        """A run's artifacts under a run-relative path prefix."""
        self.writer.flush()
        return self.runs.list_artifacts(run_id, normalize_artifact_path(prefix) if prefix else "")

    def download_artifact(self, run_id: str, path: str, dest: str | Path = ".") -> Path:
        """Download one artifact, or every artifact under a folder path, into ``dest``.

        Returns:
            The local path of the file, or of the folder holding the files.
        """
        rel = normalize_artifact_path(path)
        root = Path(dest)
        root.mkdir(parents=True, exist_ok=True)
        exact = [a for a in self.runs.list_artifacts(run_id, rel) if a.path == rel]
        records = exact or self.runs.list_artifacts(run_id, rel + "/")
        if not records:
            self.runs.get_artifact(run_id, rel)  # raises NotFoundError listing what exists
        base = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
        for record in records:
            self.artifacts.download(record.sha256, safe_join(root, record.path[len(base) :]))
        return safe_join(root, rel[len(base) :])

    def close(self) -> None:
        """Flush buffered writes and stop the writer."""
        self.writer.close()


class ActiveRun:
    """A live run: log to it, then end it (the ``with`` block does that for you)."""

    def __init__(
        self, tracker: Tracker, run: NewRun, on_end: Callable[[ActiveRun], None] | None
    ) -> None:
        self._tracker = tracker
        self._writer = tracker.writer
        self._info = run
        self._on_end = on_end
        self._params: dict[str, str] = {}
        self._known_keys: set[str] = set()
        self.status = RunStatus.RUNNING

    @property
    def id(self) -> str:
        """The run's id."""
        return self._info.id

    @property
    def name(self) -> str:
        """The run's name."""
        return self._info.name

    @property
    def experiment_id(self) -> int:
        """The id of the run's experiment."""
        return self._info.experiment_id

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, name={self.name!r}, status={self.status.value})"

    # -- logging -----------------------------------------------------------
    def log_metric(
        self, key: str, value: float, step: int = 0, timestamp: int | None = None
    ) -> None:
        """Log one point of a metric; buffered, durable at `flush` or the end of the run."""
        if key not in self._known_keys:
            self._check_metric_key(key)
        if self.status is not RunStatus.RUNNING:
            self._refuse()
        try:
            row = (
                self._info.id,
                key,
                float(value),
                int(step),
                timestamp or int(time.time() * 1000),
            )
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"metric {key!r}", f"value must be a number: {exc}") from exc
        self._writer.add_metric(row)

    def log_metrics(
        self, metrics: Mapping[str, float], step: int = 0, timestamp: int | None = None
    ) -> None:
        """Log several metrics at one step."""
        if self.status is not RunStatus.RUNNING:
            self._refuse()
        ts = timestamp or int(time.time() * 1000)
        rows = []
        for key, value in metrics.items():
            if key not in self._known_keys:
                self._check_metric_key(key)
            try:
                rows.append((self._info.id, key, float(value), int(step), ts))
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"metric {key!r}", f"value must be a number: {exc}") from exc
        self._writer.add_metrics(rows)

    def log_param(self, key: str, value: Any) -> None:
        """Log one parameter (immutable: logging another value for a key is an error)."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters; values are stored as text, as MLflow does."""
        if self.status is not RunStatus.RUNNING:
            self._refuse()
        rows = []
        for key, value in params.items():
            text = _text("param", _key("param", key), value, MAX_PARAM_VALUE)
            old = self._params.get(key)
            if old is not None and old != text:
                raise ValidationError(
                    f"param {key!r}", f"already logged as {old!r}; params cannot change"
                )
            if old is None:
                self._params[key] = text
                rows.append((self._info.id, key, text))
        self._writer.add_params(rows)

    def set_tag(self, key: str, value: Any) -> None:
        """Set a tag (tags can change)."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags."""
        rows = [(self._info.id, _key("tag", k), _text("tag", k, v)) for k, v in tags.items()]
        self._writer.add_tags(rows)

    def log_artifact(
        self, local_path: str | Path, artifact_path: str | None = None
    ) -> list[ArtifactRecord]:
        """Store a file or a folder's files with the run, content-addressed.

        A file lands at ``artifact_path/<name>``; a folder's files at
        ``artifact_path/<folder name>/<relative path>`` (``artifact_path`` defaults to the root).
        """
        local = Path(local_path)
        prefix = normalize_artifact_path(artifact_path) + "/" if artifact_path else ""
        entries = collect_upload(local)  # validates every path before anything is stored
        folder = local.name + "/" if local.is_dir() else ""
        paths = [normalize_artifact_path(prefix + folder + rel) for _, rel in entries]
        digests = [self._tracker.artifacts.put_file(file) for file, _ in entries]
        return self.attach(list(zip(paths, digests, strict=True)))

    def log_bytes(
        self, data: bytes, artifact_path: str, media_type: str | None = None
    ) -> ArtifactRecord:
        """Store bytes with the run under ``artifact_path`` (e.g. a step's captured log)."""
        path = normalize_artifact_path(artifact_path)
        digest = self._tracker.artifacts.put_bytes(data)
        return self.attach([(path, digest)], media_type)[0]

    def attach(
        self, items: Sequence[tuple[str, Digest]], media_type: str | None = None
    ) -> list[ArtifactRecord]:
        """Record content already in the artifact store as this run's outputs at these paths.

        The bytes were committed first, so a record never points at missing content.
        """
        now = _now_ms()
        records = [
            ArtifactRecord(
                self._info.id,
                normalize_artifact_path(path),
                digest.sha256,
                digest.size,
                media_type or guess_media_type(path),
                now,
            )
            for path, digest in items
        ]
        edges = [LineageEdge(self._info.id, r.sha256, "output", r.path) for r in records]
        self._writer.add_records(records, edges)
        return records

    def log_input(self, sha256: str, name: str = "") -> None:
        """Record that this run consumed the artifact with this digest (lineage)."""
        self.log_inputs([(sha256, name)])

    def log_inputs(self, inputs: Iterable[tuple[str, str]]) -> None:
        """Record several consumed artifacts as ``(sha256, name)`` pairs."""
        edges = [LineageEdge(self._info.id, s, "input", n) for s, n in inputs]
        self._writer.add_records([], edges)

    # -- ending ------------------------------------------------------------
    def flush(self) -> None:
        """Block until everything logged so far is durable."""
        self._writer.flush()

    def end(self, status: RunStatus | str = RunStatus.FINISHED, *, flush: bool = True) -> None:
        """End the run with ``status`` and make everything durable (ending twice is a no-op).

        Args:
            status: how the run ended.
            flush: wait until the end is committed; ``False`` leaves it to the writer's
                next batch (a pipeline ends its step runs so and flushes once at its end).
        """
        if self.status is not RunStatus.RUNNING:
            return
        final = RunStatus(status)
        if not final.is_final:
            raise ValidationError("status", "a run must end FINISHED, FAILED or KILLED")
        self.status = final
        self._writer.end(self.id, final, _now_ms())
        try:
            if flush:
                self._writer.flush()
        finally:
            if self._on_end is not None:
                self._on_end(self)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.KILLED)
        else:
            self.end(RunStatus.FAILED)

    # -- checks ------------------------------------------------------------
    def _check_metric_key(self, key: str) -> None:
        _key("metric", key)
        self._known_keys.add(key)

    def _refuse(self) -> None:
        raise StateError(f"run {self.id} has ended ({self.status.value}); start a new run to log")


def _key(kind: str, key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise ValidationError(
            f"{kind} key",
            f"must be a non-empty string of at most {MAX_KEY} characters, got {key!r}",
        )
    if any(ord(c) < 32 for c in key):
        raise ValidationError(f"{kind} key {key!r}", "must not contain control characters")
    return key


def _text(kind: str, key: str, value: Any, limit: int = 5000) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        raise ValidationError(
            f"{kind} {key!r}", f"value is {len(text)} characters; the limit is {limit}"
        )
    return text


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Runs as a DataFrame: one row each, ``metrics.*``/``params.*``/``tags.*`` columns."""
    import pandas as pd

    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "run_id": r.id,
            "experiment_id": r.experiment_id,
            "name": r.name,
            "status": r.status.value,
            "start_time": pd.to_datetime(r.start_time, unit="ms", utc=True),
            "end_time": None
            if r.end_time is None
            else pd.to_datetime(r.end_time, unit="ms", utc=True),
        }
        row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
        row.update({f"params.{k}": v for k, v in r.params.items()})
        row.update({f"tags.{k}": v for k, v in r.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)
