"""Engines for SQLite and PostgreSQL, and the only place where the two dialects differ.

SQLite runs in WAL mode with a long busy timeout, and every write transaction
starts with ``BEGIN IMMEDIATE``: a writer takes the write lock before it reads,
so two writers queue instead of deadlocking, and "database is locked" never
reaches the caller. Readers use a second engine with deferred transactions and
never block writers.
"""

from __future__ import annotations

import importlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool

from conveyor.errors import ConfigError, StoreError

__all__ = ["SqlEngines", "create_engines", "executemany", "redact", "upsert"]

BUSY_TIMEOUT_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SqlEngines:
    """A writer and a reader engine on one database (the same engine unless SQLite on disk)."""

    writer: Engine
    reader: Engine
    dialect: str
    url: str
    write_lock: threading.RLock | threading.Lock
    # Only an in-memory database, one connection shared by all threads, serializes reads too.
    shared_connection: bool = False

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; SQLite's lock is taken up front (``BEGIN IMMEDIATE``)."""
        with self.write_lock, self.writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction that sees one consistent snapshot."""
        if self.shared_connection:
            with self.write_lock, self.reader.begin() as conn:
                yield conn
        else:
            with self.reader.begin() as conn:
                yield conn

    def retrying(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying while SQLite reports contention, up to the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.005
        while True:
            try:
                return fn()
            except OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise StoreError(f"metadata store failed: {exc.orig}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def _is_busy(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text


def redact(url: str) -> str:
    """The URL with any password hidden, for display."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def create_engines(url: str) -> SqlEngines:
    """Engines for a ``sqlite:///…`` or ``postgresql://…`` URL."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"metadata URI {url!r} is not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engines(url, parsed.database)
    if backend in ("postgresql", "postgres"):
        return _postgres_engines(parsed.set(drivername="postgresql+psycopg"))
    raise ConfigError(
        f"metadata URI {redact(url)!r}: unsupported database {backend!r}; "
        "use sqlite:///path/to/conveyor.db or postgresql://user@host/db"
    )


def _sqlite_engines(url: str, database: str | None) -> SqlEngines:
    if not database or database == ":memory:":
        # One in-memory database must be shared by every connection of the store.
        engine = create_engine(
            "sqlite://",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False, "isolation_level": None},
        )
        _configure_sqlite(engine, begin="BEGIN IMMEDIATE", wal=False)
        return SqlEngines(engine, engine, "sqlite", url, threading.RLock(), shared_connection=True)
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    args = {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False, "isolation_level": None}
    writer = create_engine(url, connect_args=args)
    reader = create_engine(url, connect_args=args)
    _configure_sqlite(writer, begin="BEGIN IMMEDIATE", wal=True)
    _configure_sqlite(reader, begin="BEGIN", wal=True)
    return SqlEngines(writer, reader, "sqlite", url, threading.Lock())


def _configure_sqlite(engine: Engine, *, begin: str, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if wal:
            _set_wal(cur)
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)


def _set_wal(cur: Any) -> None:
    # Switching to WAL needs a moment of exclusive access; when many processes open
    # a new database at once, some must wait for it. Once set, it persists in the file.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _postgres_engines(url: Any) -> SqlEngines:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "PostgreSQL needs the psycopg driver: pip install 'conveyor-mlops[postgres]'"
        ) from exc
    engine = create_engine(url, pool_size=4, max_overflow=8, pool_pre_ping=True)
    rendered = url.render_as_string(hide_password=False)
    # PostgreSQL handles concurrent writers itself; the lock only orders this process's threads.
    return SqlEngines(engine, engine, "postgresql", rendered, threading.Lock())


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    update: Sequence[str] = (),
    where: str | None = None,
) -> None:
    """Insert rows; on a key conflict update ``update`` columns (or do nothing).

    ``where`` is a condition over ``excluded`` and the table (bound by name, no values)
    that must hold for the update to happen.
    """
    if not rows:
        return
    # Each dialect's insert() knows ON CONFLICT; loaded only for the dialect in use.
    dialect = importlib.import_module(f"sqlalchemy.dialects.{conn.dialect.name}")
    stmt: Any = dialect.insert(table)
    if update:
        from sqlalchemy import text

        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={c: stmt.excluded[c] for c in update},
            where=text(where) if where else None,
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(stmt, list(rows))


_NAMED = re.compile(r"(?<![:\w]):(\w+)")


@lru_cache(maxsize=64)
def _for_driver(sql: str, dialect: str) -> str:
    # The SQL is written with :name parameters (sqlite3's named style); psycopg wants %(name)s.
    if dialect == "sqlite":
        return sql
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


def executemany(conn: Connection, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run one statement for many rows straight through the driver (no compile per call)."""
    if not rows:
        return
    dbapi = conn.dialect.dbapi
    assert dbapi is not None
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(_for_driver(sql, conn.dialect.name), rows)
    except dbapi.Error as exc:
        # The same exception classes SQLAlchemy raises, so callers (and the busy retry) see them.
        raise DBAPIError.instance(sql, None, exc, dbapi.Error) from exc
    finally:
        cursor.close()
