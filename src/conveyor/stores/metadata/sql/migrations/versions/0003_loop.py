"""The closed loop: monitor evaluations, alerts, trigger events, leases, state,
delivery checks and traffic policies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "monitor_evaluations",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("monitor", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("window_end", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("drift_share", sa.Float),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("report_sha256", sa.String(64)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_evaluations"),
    )
    op.create_index(
        "ix_monitor_evaluations_monitor_window_end",
        "monitor_evaluations",
        ["monitor", "window_end"],
    )
    op.create_table(
        "alerts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(256), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("model", sa.String(128)),
        sa.Column("version", sa.Integer),
        sa.Column("evaluation_id", sa.BigInteger),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_source", "alerts", ["source"])
    op.create_table(
        "trigger_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("trigger", sa.String(128), nullable=False),
        sa.Column("pipeline", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(32)),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trigger_events"),
    )
    op.create_index("ix_trigger_events_trigger", "trigger_events", ["trigger"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("acquired_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )
    op.create_table(
        "loop_state",
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_loop_state"),
    )
    op.create_table(
        "delivery_checks",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("attempt", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_checks"),
    )
    op.create_index("ix_delivery_checks_model_version", "delivery_checks", ["model", "version"])
    op.create_table(
        "traffic",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("canary_version", sa.Integer),
        sa.Column("canary_share", sa.Float, nullable=False),
        sa.Column("shadow_version", sa.Integer),
        sa.Column("sticky_key", sa.String(128)),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("model", "alias", name="pk_traffic"),
    )


def downgrade() -> None:
    for name in (
        "traffic",
        "delivery_checks",
        "loop_state",
        "leases",
        "trigger_events",
        "alerts",
        "monitor_evaluations",
    ):
        op.drop_table(name)
