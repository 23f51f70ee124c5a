"""The tables of the metadata store, shared by SQLite and PostgreSQL.

The Alembic tree in ``migrations/`` creates exactly these; a test compares them.
Times are epoch milliseconds. A latest-metric value of SQL ``NULL`` means NaN,
since SQLite cannot store NaN (and PostgreSQL's NaN sorts above every number).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "alerts",
    "alias_events",
    "aliases",
    "artifacts",
    "delivery_checks",
    "experiments",
    "latest_metrics",
    "leases",
    "lineage",
    "loop_state",
    "metadata",
    "metric_chunks",
    "model_files",
    "model_tags",
    "model_versions",
    "models",
    "monitor_evaluations",
    "params",
    "runs",
    "tags",
    "traffic",
    "trigger_events",
    "version_tags",
]

# A 64-bit surrogate key that is still SQLite's fast rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _run_fk() -> ForeignKey:
    return ForeignKey("runs.id", ondelete="CASCADE")


experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger),
    Column("parent_run_id", String(32), ForeignKey("runs.id", ondelete="SET NULL")),
    Column("heartbeat_at", BigInteger),
    Column("git_sha", String(64)),
    Column("diff_hash", String(64)),
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
    Index("ix_runs_status_heartbeat", "status", "heartbeat_at"),
    Index("ix_runs_parent", "parent_run_id"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", String(32), _run_fk(), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", String(32), _run_fk(), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
)

# The full history of every metric, stored as chunks: each committed batch adds,
# per (run, key), one row holding its points as packed little-endian arrays
# (int64 steps, float64 values, int64 timestamps). A million points cost a few
# hundred rows to write instead of a million index entries (ADR 6).
metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), _run_fk(), nullable=False),
    Column("key", String(250), nullable=False),
    Column("count", Integer, nullable=False),
    Column("min_step", BigInteger, nullable=False),
    Column("max_step", BigInteger, nullable=False),
    Column("steps_blob", LargeBinary, nullable=False),
    Column("values_blob", LargeBinary, nullable=False),
    Column("timestamps_blob", LargeBinary, nullable=False),
    Index("ix_metric_chunks_run_key", "run_id", "key"),
)

# The latest point of each metric of each run, kept in step with `metrics` in
# the same transaction, so that searching and ordering by a metric is one join.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", String(32), _run_fk(), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Float),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
    Index("ix_latest_metrics_key_value", "key", "value"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", String(32), _run_fk(), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_id", "path"),
    Index("ix_artifacts_sha256", "sha256"),
)

lineage = Table(
    "lineage",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), _run_fk(), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("name", String(256), nullable=False),
    UniqueConstraint("run_id", "sha256", "direction", "name"),
    Index("ix_lineage_sha256", "sha256"),
)


# --- Model registry (revision 0002) ---------------------------------------------
# A version's package lives in the artifact store; these rows point at it. Versions
# are never updated except their tags and description. `models.latest_version` is
# the counter a new version's number is allocated from, under the model row's lock.


def _model_fk() -> ForeignKey:
    return ForeignKey("models.id", ondelete="CASCADE")


def _version_fk() -> ForeignKey:
    return ForeignKey("model_versions.id", ondelete="CASCADE")


models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text),
    Column("latest_version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model_id", Integer, _model_fk(), nullable=False),
    Column("version", Integer, nullable=False),
    Column("format", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("trusted", Boolean, nullable=False),
    Column("run_id", String(32)),
    Column("description", Text),
    Column("git_sha", String(64)),
    Column("diff_hash", String(64)),
    Column("signature", Text, nullable=False),
    Column("environment", Text, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("data_digests", Text, nullable=False),
    Column("profile_sha256", String(64)),
    UniqueConstraint("model_id", "version"),
    Index("ix_model_versions_run_id", "run_id"),
)

model_files = Table(
    "model_files",
    metadata,
    Column("version_id", BigId, _version_fk(), nullable=False),
    Column("path", String(256), nullable=False),
    Column("sha256", String(64), nullable=False),
    PrimaryKeyConstraint("version_id", "path"),
    Index("ix_model_files_sha256", "sha256"),
)

model_tags = Table(
    "model_tags",
    metadata,
    Column("model_id", Integer, _model_fk(), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("model_id", "key"),
)

version_tags = Table(
    "version_tags",
    metadata,
    Column("version_id", BigId, _version_fk(), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("version_id", "key"),
)

# An alias row always references an existing version (the foreign key), and a move
# is one UPDATE in the transaction that writes its event: no reader sees it dangling.
aliases = Table(
    "aliases",
    metadata,
    Column("model_id", Integer, _model_fk(), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version_id", BigId, _version_fk(), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("model_id", "alias"),
)

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model_id", Integer, _model_fk(), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("actor", String(256), nullable=False),
    Column("reason", Text),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_alias_events_model_alias", "model_id", "alias"),
)


# --- The closed loop: monitors, alerts, triggers, leases, delivery (0003) -------------
# Records name models by name, not by key: a monitor or trigger may outlive a model
# and its history must stay readable. Free-form details are JSON text.

monitor_evaluations = Table(
    "monitor_evaluations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("monitor", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("window_end", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("drift_share", Float),
    Column("metrics", Text, nullable=False),
    Column("report_sha256", String(64)),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_monitor_evaluations_monitor_window_end", "monitor", "window_end"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False),
    Column("rule", String(256), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("model", String(128)),
    Column("version", Integer),
    Column("evaluation_id", BigInteger),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_alerts_source", "source"),
)

trigger_events = Table(
    "trigger_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("trigger", String(128), nullable=False),
    Column("pipeline", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("run_id", String(32)),
    Column("detail", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_trigger_events_trigger", "trigger"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("holder", String(256), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("acquired_at", BigInteger, nullable=False),
)

loop_state = Table(
    "loop_state",
    metadata,
    Column("key", String(256), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

delivery_checks = Table(
    "delivery_checks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("stage", String(64), nullable=False),
    Column("attempt", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("detail", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_delivery_checks_model_version", "model", "version"),
)

traffic = Table(
    "traffic",
    metadata,
    Column("model", String(128), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("canary_version", Integer),
    Column("canary_share", Float, nullable=False),
    Column("shadow_version", Integer),
    Column("sticky_key", String(128)),
    Column("actor", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("model", "alias"),
)
