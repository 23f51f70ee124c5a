"""Many processes writing to one store at once: nothing lost, nothing doubled, no errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.core.entities import RunStatus
from conveyor.stores.backends import open_metadata_store

CHILD = Path(__file__).with_name("child_logger.py")
SECONDS = float(os.environ.get("CONVEYOR_SOAK_SECONDS", "30"))


def _soak(url: str, artifacts: str, processes: int) -> dict[str, int]:
    open_metadata_store(url).close()  # migrate once, so the soak measures writing
    procs = [
        subprocess.Popen(
            [sys.executable, str(CHILD), "soak", url, artifacts, str(SECONDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    logged: dict[str, int] = {}
    for proc in procs:
        out, err = proc.communicate(timeout=SECONDS + 120)
        assert proc.returncode == 0, err
        assert "locked" not in err.lower()
        assert "error" not in err.lower(), err
        logged.update(json.loads(out))
    return logged


def _check(url: str, logged: dict[str, int]) -> None:
    store = open_metadata_store(url)
    for run_id, expected in logged.items():
        points = [(m.key, m.step) for key in ("a", "b") for m in store.metric_history(run_id, key)]
        assert len(points) == expected, f"run {run_id}: {len(points)} stored, {expected} logged"
        assert len(set(points)) == len(points), f"run {run_id}: duplicated points"
    finished = store.search_runs(filter="attributes.status = 'FINISHED'", max_results=50_000)
    assert len(finished) == len(logged)
    assert all(r.tags.get("done") == "yes" for r in finished)
    assert all(r.status is RunStatus.FINISHED for r in finished)
    store.close()


@pytest.mark.slow
def test_eight_processes_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'soak.db'}"
    logged = _soak(url, str(tmp_path / "a"), 8)
    assert len(logged) >= 8
    _check(url, logged)


@pytest.mark.slow
@pytest.mark.postgres
def test_thirty_two_processes_on_postgres(postgres_url, tmp_path):
    logged = _soak(postgres_url, str(tmp_path / "a"), 32)
    assert len(logged) >= 32
    _check(postgres_url, logged)
