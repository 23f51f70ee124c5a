"""Fixtures for the SQL metadata tests: new databases with our tables, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from conveyor.stores.metadata.sql import schema

_DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The URL of the test PostgreSQL (psycopg 3 driver); skip if it is away.

    CONVEYOR_TEST_POSTGRES_URI overrides the default; with CONVEYOR_REQUIRE_POSTGRES=1
    an unreachable server fails the tests instead of skipping them.
    """
    url = make_url(os.environ.get("CONVEYOR_TEST_POSTGRES_URI", _DEFAULT_PG_URL))
    url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        if os.environ.get("CONVEYOR_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (CONVEYOR_REQUIRE_POSTGRES=1): {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    finally:
        engine.dispose()
    return url.render_as_string(hide_password=False)


@contextmanager
def _postgres_engine(url: str) -> Iterator[Engine]:
    """An engine whose connections live in a new schema, dropped on exit."""
    name = f"s_{uuid.uuid4().hex}"
    admin = create_engine(url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    engine = create_engine(url, connect_args={"options": f"-csearch_path={name}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@contextmanager
def _engine(request: pytest.FixtureRequest, directory: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{directory / 'conveyor.db'}")
        schema.metadata.create_all(engine)
        yield engine
        engine.dispose()
        return
    with _postgres_engine(request.getfixturevalue("pg_url")) as engine:
        schema.metadata.create_all(engine)
        yield engine


_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=_BACKENDS)
def sql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A new database with conveyor's tables, for one test, on each backend."""
    with _engine(request, tmp_path) as engine:
        yield engine


@pytest.fixture(scope="module", params=_BACKENDS)
def module_sql_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A new database with conveyor's tables shared by one module's read-only tests."""
    with _engine(request, tmp_path_factory.mktemp("sql")) as engine:
        yield engine
