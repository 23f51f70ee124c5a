"""The hot write path: a `WriteBatch` applied in one transaction with prepared driver SQL.

The writer commits many small batches (a thousand runs a second is one batch
each), so these statements skip SQLAlchemy's per-statement compile and go to
the driver as ``executemany``. The SQL is the same for SQLite and PostgreSQL
(both speak ``INSERT … ON CONFLICT``); only the parameter style differs, and
`executemany` in the engine module handles that.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection

from conveyor.core.entities import ArtifactRecord, LineageEdge, RunStatus
from conveyor.errors import ValidationError
from conveyor.stores.metadata.base import NewRun, WriteBatch
from conveyor.stores.metadata.sql.chunks import encode_chunks, latest_of_chunks
from conveyor.stores.metadata.sql.engine import executemany

__all__ = ["apply_batch", "insert_artifacts", "insert_lineage", "insert_runs"]

_INSERT_RUN = (
    "INSERT INTO runs (id, experiment_id, name, status, start_time, parent_run_id, "
    "heartbeat_at, git_sha, diff_hash) VALUES (:id, :experiment_id, :name, 'RUNNING', "
    ":start_time, :parent_run_id, :start_time, :git_sha, :diff_hash)"
)
_INSERT_CHUNK = (
    "INSERT INTO metric_chunks (run_id, key, count, min_step, max_step, steps_blob, "
    "values_blob, timestamps_blob) VALUES (:run_id, :key, :count, :min_step, :max_step, "
    ":steps_blob, :values_blob, :timestamps_blob)"
)
# A latest point moves only forward: a higher step, or the same step and not older.
_UPSERT_LATEST = (
    "INSERT INTO latest_metrics (run_id, key, value, step, timestamp) "
    "VALUES (:run_id, :key, :value, :step, :timestamp) "
    "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, step = excluded.step, "
    "timestamp = excluded.timestamp WHERE excluded.step > latest_metrics.step OR "
    "(excluded.step = latest_metrics.step AND excluded.timestamp >= latest_metrics.timestamp)"
)
# Params are immutable: the first value stays.
_INSERT_PARAM = (
    "INSERT INTO params (run_id, key, value) VALUES (:run_id, :key, :value) "
    "ON CONFLICT (run_id, key) DO NOTHING"
)
_UPSERT_TAG = (
    "INSERT INTO tags (run_id, key, value) VALUES (:run_id, :key, :value) "
    "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"
)
# Logging a path again points it at the new content.
_UPSERT_ARTIFACT = (
    "INSERT INTO artifacts (run_id, path, sha256, size, media_type, created_at) "
    "VALUES (:run_id, :path, :sha256, :size, :media_type, :created_at) "
    "ON CONFLICT (run_id, path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, "
    "media_type = excluded.media_type, created_at = excluded.created_at"
)
_INSERT_LINEAGE = (
    "INSERT INTO lineage (run_id, sha256, direction, name) "
    "VALUES (:run_id, :sha256, :direction, :name) "
    "ON CONFLICT (run_id, sha256, direction, name) DO NOTHING"
)
_HEARTBEAT = "UPDATE runs SET heartbeat_at = :at WHERE id = :id AND status = 'RUNNING'"
_END = "UPDATE runs SET status = :status, end_time = :at WHERE id = :id"


def insert_runs(conn: Connection, runs: list[NewRun]) -> None:
    """Insert new ``RUNNING`` runs (their first heartbeat is their start) and their tags."""
    rows = [
        {
            "id": r.id,
            "experiment_id": r.experiment_id,
            "name": r.name,
            "start_time": r.start_time,
            "parent_run_id": r.parent_run_id,
            "git_sha": r.source.git_sha,
            "diff_hash": r.source.diff_hash,
        }
        for r in runs
    ]
    executemany(conn, _INSERT_RUN, rows)
    tags = [{"run_id": r.id, "key": k, "value": v} for r in runs for k, v in r.tags.items()]
    executemany(conn, _UPSERT_TAG, tags)


def insert_artifacts(conn: Connection, records: Iterable[ArtifactRecord]) -> None:
    """Record files logged to runs (their bytes are already committed)."""
    rows = [
        {
            "run_id": a.run_id,
            "path": a.path,
            "sha256": a.sha256,
            "size": a.size,
            "media_type": a.media_type,
            "created_at": a.created_at,
        }
        for a in records
    ]
    executemany(conn, _UPSERT_ARTIFACT, rows)


def insert_lineage(conn: Connection, edges: Iterable[LineageEdge]) -> None:
    """Record artifacts consumed and produced by runs; an edge recorded twice stays one."""
    rows = [
        {"run_id": e.run_id, "sha256": e.sha256, "direction": e.direction, "name": e.name}
        for e in edges
    ]
    for row in rows:
        if row["direction"] not in ("input", "output"):
            raise ValidationError("direction", "must be 'input' or 'output'")
    executemany(conn, _INSERT_LINEAGE, rows)


def apply_batch(conn: Connection, batch: WriteBatch) -> None:
    """Apply everything in ``batch``: new runs first, so the rest may refer to them."""
    insert_runs(conn, batch.runs)
    chunks = encode_chunks(batch.metrics)
    latest = latest_of_chunks(chunks)
    executemany(conn, _INSERT_CHUNK, chunks)
    executemany(conn, _UPSERT_LATEST, latest)
    executemany(conn, _INSERT_PARAM, _key_values(batch.params))
    executemany(conn, _UPSERT_TAG, _key_values(batch.tags))
    insert_artifacts(conn, batch.artifacts)
    insert_lineage(conn, batch.lineage)
    executemany(conn, _HEARTBEAT, [{"id": r, "at": at} for r, at in batch.heartbeats])
    ends = [{"id": r, "status": RunStatus(s).value, "at": at} for r, s, at in batch.ends]
    executemany(conn, _END, ends)


def _key_values(rows: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    return [{"run_id": r, "key": k, "value": v} for r, k, v in rows]
