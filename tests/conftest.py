"""Fixtures shared by the whole test suite; each section belongs to one area."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# --- S3 (moto server) ---------------------------------------------------------
# A real S3-compatible server over HTTP on 127.0.0.1, one per test session, with
# a fresh bucket per test. moto and boto3 are imported only when S3 tests run.

_FAKE_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Keep a developer's real AWS configuration out of the tests.
    "AWS_CONFIG_FILE": "/nonexistent/conveyor-tests/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/conveyor-tests/aws-credentials",
}
_ENDPOINT_VARIABLES = ("CONVEYOR_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(scope="session")
def s3_endpoint_url() -> Iterator[str]:
    """The URL of a moto S3 server running for this session, with fake credentials set."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        for name, value in _FAKE_AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        for name in (*_ENDPOINT_VARIABLES, "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint_url: str) -> str:
    """A new, empty bucket on the session's moto server."""
    import boto3

    name = f"conveyor-test-{uuid.uuid4().hex[:20]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint_url)
    try:
        client.create_bucket(Bucket=name)
    finally:
        client.close()
    return name


# --- end S3 (moto server) -----------------------------------------------------


# --- PostgreSQL -----------------------------------------------------------------
# The real service on 127.0.0.1:5432 (user postgres, trust auth, database test).
# Each test gets its own schema, dropped afterwards. Without the service these
# tests skip, unless CONVEYOR_REQUIRE_POSTGRES=1 (as in CI), where they fail.

POSTGRES_BASE = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_or_skip() -> None:
    import psycopg

    try:
        psycopg.connect(POSTGRES_BASE, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CONVEYOR_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (CONVEYOR_REQUIRE_POSTGRES=1) but: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_BASE}: {exc}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL whose connections use a fresh, private schema."""
    import psycopg

    _postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(POSTGRES_BASE, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_BASE, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh metadata store URL on each SQL backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'conveyor.db'}"
    return str(request.getfixturevalue("postgres_url"))


# --- end PostgreSQL -------------------------------------------------------------


# --- Data with known drift (profiling and monitoring tests) ---------------------


def make_frame(rows: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Numeric, categorical, boolean and datetime columns; ``shift`` moves some of them."""
    rng = np.random.default_rng(seed)
    levels = np.array(["a", "b", "c", "d", "e"], dtype=object)
    p = np.full(5, 0.2) if not shift else np.linspace(1, 1 + 4 * shift, 5) / (5 + 10 * shift)
    return pd.DataFrame(
        {
            "normal": rng.normal(shift, 1.0, rows),
            "lognormal": rng.lognormal(0.0, 0.5, rows),
            "integer": rng.integers(0, 50, rows),
            "few": rng.integers(0, 4, rows).astype(float),
            "category": levels[rng.choice(5, rows, p=p / p.sum())],
            "flag": rng.random(rows) < 0.3 + shift / 4,
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, rows), "s"),
        }
    )


@pytest.fixture
def make():
    """The frame maker, for tests that need their own sizes."""
    return make_frame


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference of 5,000 rows and a current window of 4,000 with drift in some columns."""
    return make_frame(5000, seed=1), make_frame(4000, shift=0.3, seed=2)


@pytest.fixture
def parquet_pair(tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[Path, Path]:
    """The same frames as Parquet files."""
    ref, cur = tmp_path / "ref.parquet", tmp_path / "cur.parquet"
    frames[0].to_parquet(ref, row_group_size=1500)
    frames[1].to_parquet(cur, row_group_size=1500)
    return ref, cur


# --- end data with known drift ---------------------------------------------------
