"""`SqlMetadataStore`: the metadata store on SQLite or PostgreSQL through SQLAlchemy Core."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.core.entities import (
    ArtifactRecord,
    Experiment,
    LineageEdge,
    Metric,
    Run,
    RunStatus,
    SourceVersion,
)
from conveyor.errors import NotFoundError, ValidationError
from conveyor.stores.metadata.base import NewRun, RunStore, WriteBatch
from conveyor.stores.metadata.sql import schema as t
from conveyor.stores.metadata.sql.batch import (
    apply_batch,
    insert_artifacts,
    insert_lineage,
    insert_runs,
)
from conveyor.stores.metadata.sql.chunks import decode_history
from conveyor.stores.metadata.sql.engine import SqlEngines, create_engines, redact, upsert
from conveyor.stores.metadata.sql.migrate import HEAD, current_revision, ensure_schema
from conveyor.stores.metadata.sql.search import build_search_query

__all__ = ["SqlMetadataStore"]

# Update a latest point only with a later one: higher step, or same step and not older.
_LATER = (
    "excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step "
    "AND excluded.timestamp >= latest_metrics.timestamp)"
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _value(v: float | None) -> float:
    return math.nan if v is None else float(v)


class SqlMetadataStore(RunStore):
    """Every tracking record in one SQL database (SQLite file or PostgreSQL).

    Args:
        url: ``sqlite:///path/conveyor.db``, ``sqlite://`` (in memory) or ``postgresql://…``.
        migrate: bring the schema to the current revision on open (the default).
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._db: SqlEngines = create_engines(url)
        self.migrated = ensure_schema(self._db) if migrate else False

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.dialect

    # -- experiments -------------------------------------------------------
    def get_or_create_experiment(self, name: str) -> Experiment:
        """The experiment called ``name``, created if missing; safe under races."""
        _check_name("experiment", name)
        with self._db.read() as conn:
            found = _experiment_by_name(conn, name)
        if found is not None:
            return found
        row = {"name": name, "created_at": _now_ms()}
        self._db.retrying(lambda: self._write(lambda c: upsert(c, t.experiments, [row], ["name"])))
        with self._db.read() as conn:
            found = _experiment_by_name(conn, name)
        assert found is not None
        return found

    def get_experiment(self, name: str) -> Experiment:
        """The experiment called ``name``."""
        with self._db.read() as conn:
            found = _experiment_by_name(conn, name)
        if found is None:
            known = ", ".join(e.name for e in self.list_experiments()) or "none yet"
            raise NotFoundError(f"no experiment named {name!r}; known experiments: {known}")
        return found

    def list_experiments(self) -> list[Experiment]:
        """Every experiment, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute(select(t.experiments).order_by(t.experiments.c.id)).all()
        return [Experiment(r.id, r.name, r.created_at) for r in rows]

    # -- runs --------------------------------------------------------------
    def create_run(self, run: NewRun) -> None:
        """Insert a ``RUNNING`` run and its first tags in one transaction."""
        _check_name("run name", run.name, allow_empty=True)
        try:
            self._db.retrying(lambda: self._write(lambda conn: insert_runs(conn, [run])))
        except IntegrityError as exc:
            raise ValidationError(
                "run", f"cannot create run {run.id}: it exists, or its parent does not"
            ) from exc

    def get_run(self, run_id: str) -> Run:
        """A run with its params, latest metrics, tags and artifacts."""
        with self._db.read() as conn:
            runs = self._load_runs(conn, [run_id], with_artifacts=True)
        if not runs:
            raise NotFoundError(f"no run with id {run_id!r}")
        return runs[0]

    def write(self, batch: WriteBatch) -> None:
        """Apply a batch in one transaction (retried while SQLite is busy)."""
        if len(batch):
            self._db.retrying(lambda: self._write(lambda conn: apply_batch(conn, batch)))

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of ``key`` in ``run_id``, by step then timestamp."""
        c = t.metric_chunks.c
        query = (
            select(c.steps_blob, c.values_blob, c.timestamps_blob)
            .where(c.run_id == run_id, c.key == key)
            .order_by(c.id)
        )
        with self._db.read() as conn:
            chunks = [(bytes(s), bytes(v), bytes(ts)) for s, v, ts in conn.execute(query)]
        return decode_history(key, chunks)

    def search_runs(
        self,
        experiment_ids: Sequence[int] | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        offset: int = 0,
    ) -> list[Run]:
        """Runs matching ``filter`` (see the filter language), in order, paged."""
        query = build_search_query(experiment_ids, filter, order_by, max_results, offset)
        with self._db.read() as conn:
            ids = [str(r[0]) for r in conn.execute(query)]
            return self._load_runs(conn, ids, with_artifacts=False)

    def reap(self, grace_ms: int, now_ms: int | None = None) -> list[str]:
        """Mark ``FAILED`` the running runs whose last heartbeat is older than the grace."""
        cutoff = (now_ms if now_ms is not None else _now_ms()) - grace_ms
        r = t.runs.c
        stale = (r.status == RunStatus.RUNNING.value) & (r.heartbeat_at < cutoff)
        with self._db.read() as conn:
            if conn.execute(select(r.id).where(stale).limit(1)).first() is None:
                return []  # the common case costs one indexed read and no write lock

        def mark(conn: Connection) -> list[str]:
            ids = [row[0] for row in conn.execute(select(r.id).where(stale))]
            conn.execute(
                update(t.runs)
                .where(r.id.in_(ids))
                .values(status=RunStatus.FAILED.value, end_time=r.heartbeat_at)
            )
            return ids

        return self._db.retrying(lambda: self._write(mark))

    # -- artifacts and lineage ---------------------------------------------
    def add_artifacts(self, records: Iterable[ArtifactRecord]) -> None:
        """Record logged files; logging a path again points it at the new content."""
        rows = list(records)
        self._db.retrying(lambda: self._write(lambda c: insert_artifacts(c, rows)))

    def list_artifacts(self, run_id: str, prefix: str = "") -> list[ArtifactRecord]:
        """A run's artifacts whose path starts with ``prefix``, by path."""
        a = t.artifacts.c
        query = select(t.artifacts).where(a.run_id == run_id).order_by(a.path)
        if prefix:
            query = query.where(a.path.startswith(prefix, autoescape=True))
        with self._db.read() as conn:
            return [_artifact(row) for row in conn.execute(query)]

    def get_artifact(self, run_id: str, path: str) -> ArtifactRecord:
        """One artifact of a run."""
        a = t.artifacts.c
        with self._db.read() as conn:
            row = conn.execute(
                select(t.artifacts).where(a.run_id == run_id, a.path == path)
            ).first()
        if row is not None:
            return _artifact(row)
        known = [r.path for r in self.list_artifacts(run_id)]
        listing = ", ".join(known[:20]) or "none"
        raise NotFoundError(f"run {run_id} has no artifact {path!r}; it has: {listing}")

    def add_lineage(self, edges: Iterable[LineageEdge]) -> None:
        """Record inputs and outputs of runs; recording an edge twice keeps one."""
        rows = list(edges)
        self._db.retrying(lambda: self._write(lambda c: insert_lineage(c, rows)))

    def lineage_of_run(self, run_id: str) -> list[LineageEdge]:
        """The inputs and outputs of one run."""
        return self._edges(t.lineage.c.run_id == run_id)

    def lineage_of_artifact(self, sha256: str) -> list[LineageEdge]:
        """The runs that produced or consumed one artifact."""
        return self._edges(t.lineage.c.sha256 == sha256)

    def referenced_digests(self) -> set[str]:
        """Every digest an artifact or lineage record points at."""
        with self._db.read() as conn:
            found = {r[0] for r in conn.execute(select(t.artifacts.c.sha256).distinct())}
            found |= {r[0] for r in conn.execute(select(t.lineage.c.sha256).distinct())}
        return found

    # -- housekeeping ------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Backend, redacted URL, revision and how many records of each kind are stored."""
        tables = ("experiments", "runs", "params", "tags", "artifacts", "lineage")
        with self._db.read() as conn:
            counts = {
                name: conn.execute(
                    select(func.count()).select_from(t.metadata.tables[name])
                ).scalar_one()
                for name in tables
            }
            points = select(func.coalesce(func.sum(t.metric_chunks.c.count), 0))
            counts["metric points"] = int(conn.execute(points).scalar_one())
            revision = current_revision(conn)
        return {
            "backend": self.dialect,
            "url": redact(self.url),
            "revision": revision,
            "head": HEAD,
            "rows": counts,
        }

    def close(self) -> None:
        """Dispose of the engines' connection pools."""
        self._db.dispose()

    # -- internals ---------------------------------------------------------
    def _write(self, fn: Any) -> Any:
        with self._db.write() as conn:
            return fn(conn)

    def _edges(self, where: Any) -> list[LineageEdge]:
        query = select(t.lineage).where(where).order_by(t.lineage.c.id)
        with self._db.read() as conn:
            return [
                LineageEdge(r.run_id, r.sha256, r.direction, r.name) for r in conn.execute(query)
            ]

    def _load_runs(self, conn: Connection, ids: list[str], *, with_artifacts: bool) -> list[Run]:
        if not ids:
            return []
        rows = {r.id: r for r in conn.execute(select(t.runs).where(t.runs.c.id.in_(ids)))}
        params = _key_values(conn, t.params, ids)
        tags = _key_values(conn, t.tags, ids)
        latest: dict[str, dict[str, float]] = defaultdict(dict)
        lm = t.latest_metrics.c
        for run_id, key, value in conn.execute(
            select(lm.run_id, lm.key, lm.value).where(lm.run_id.in_(ids))
        ):
            latest[run_id][key] = _value(value)
        arts: dict[str, list[ArtifactRecord]] = defaultdict(list)
        if with_artifacts:
            a = t.artifacts.c
            for row in conn.execute(select(t.artifacts).where(a.run_id.in_(ids)).order_by(a.path)):
                arts[row.run_id].append(_artifact(row))
        return [
            Run(
                id=r.id,
                experiment_id=r.experiment_id,
                name=r.name,
                status=RunStatus(r.status),
                start_time=r.start_time,
                end_time=r.end_time,
                parent_run_id=r.parent_run_id,
                heartbeat_at=r.heartbeat_at,
                source=SourceVersion(r.git_sha, r.diff_hash),
                params=params.get(r.id, {}),
                metrics=latest.get(r.id, {}),
                tags=tags.get(r.id, {}),
                artifacts=tuple(arts.get(r.id, ())),
                history_loader=partial(self.metric_history, r.id),
            )
            for r in (rows[i] for i in ids if i in rows)
        ]


def _check_name(what: str, name: str, *, allow_empty: bool = False) -> None:
    if not isinstance(name, str):
        raise ValidationError(what, f"must be a string, got {type(name).__name__}")
    if (not name and not allow_empty) or len(name) > 256:
        raise ValidationError(what, "must be 1 to 256 characters long")


def _experiment_by_name(conn: Connection, name: str) -> Experiment | None:
    row = conn.execute(select(t.experiments).where(t.experiments.c.name == name)).first()
    return None if row is None else Experiment(row.id, row.name, row.created_at)


def _key_values(conn: Connection, table: Any, ids: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    c = table.c
    for run_id, key, value in conn.execute(
        select(c.run_id, c.key, c.value).where(c.run_id.in_(ids))
    ):
        out[run_id][key] = value
    return out


def _artifact(row: Any) -> ArtifactRecord:
    return ArtifactRecord(
        row.run_id, row.path, row.sha256, row.size, row.media_type, row.created_at
    )
