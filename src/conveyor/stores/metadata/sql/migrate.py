"""Bring a database to the current schema revision, safely when many processes start at once.

The fast path is one ``SELECT`` of the recorded revision. Otherwise the caller
takes the database's write lock (``BEGIN IMMEDIATE`` on SQLite, an advisory
lock on PostgreSQL), reads the revision again, and only then migrates: of
twenty processes starting together exactly one migrates and all succeed.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from conveyor.errors import MigrationError
from conveyor.stores.metadata.sql.engine import SqlEngines

__all__ = ["HEAD", "current_revision", "ensure_schema"]

HEAD = "0003"
MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same in every process.
_PG_LOCK_KEY = 0x636F6E76  # "conv"


def current_revision(conn: Connection) -> str | None:
    """The revision recorded in the database, or None for an empty one."""
    try:
        with conn.begin_nested():
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    except DBAPIError:
        return None
    return None if row is None else str(row[0])


def ensure_schema(engines: SqlEngines) -> bool:
    """Migrate to `HEAD` if needed; return whether this call did the migrating."""
    with engines.read() as conn:
        if current_revision(conn) == HEAD:
            return False
    try:
        return engines.retrying(lambda: _migrate_locked(engines))
    except MigrationError:
        raise
    except Exception as exc:
        raise MigrationError(f"could not migrate the metadata store to {HEAD}: {exc}") from exc


def _migrate_locked(engines: SqlEngines) -> bool:
    with engines.write() as conn:
        if engines.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        found = current_revision(conn)
        if found == HEAD:
            return False
        if found is not None and not any((MIGRATIONS / "versions").glob(f"{found}_*.py")):
            raise MigrationError(
                f"the database is at revision {found!r}, which this version of conveyor "
                f"does not know (it knows up to {HEAD!r}); upgrade conveyor"
            )
        _upgrade(conn)
        return True


def _upgrade(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
