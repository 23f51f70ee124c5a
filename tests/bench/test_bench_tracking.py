"""Smoke test of the tracking benchmark: tiny sizes, one repetition, conveyor only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_tracking.py"
POSTGRES_BASE = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/test"
)
FIGURES = {"a": "calls_per_s", "b": "points_per_s", "c": "runs_per_s", "d": "ms"}


def _postgres_available() -> bool:
    """As tests/conftest.py: skip PostgreSQL without the service, unless CI requires it."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_BASE, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CONVEYOR_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (CONVEYOR_REQUIRE_POSTGRES=1) but: {exc}")
        return False
    return True


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "tracking.json"
    with_postgres = _postgres_available()
    argv = [sys.executable, str(SCRIPT), "--quick", "--reps", "1", "--skip-mlflow"]
    argv += ["--out", str(out), "--postgres-uri", POSTGRES_BASE]
    if not with_postgres:
        argv.append("--skip-postgres")

    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT)

    assert done.returncode == 0, done.stderr[-4000:]
    doc = json.loads(out.read_text())
    backends = ["conveyor-sqlite"] + (["conveyor-postgres"] if with_postgres else [])
    assert sorted(doc["results"]) == sorted(backends)
    for backend in backends:
        for figure, field in FIGURES.items():
            (rep,) = doc["results"][backend][figure]
            assert rep[field] > 0, (backend, figure, rep)
            assert doc["summary"][backend][figure]["value"]["median"] > 0
            assert rep["cpu"]["foreign_cores"] >= 0
    assert "mlflow-sqlite" in doc["skipped"]
    assert "conveyor vs MLflow" in done.stdout
