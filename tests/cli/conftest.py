"""Run the real ``conveyor`` command in a fresh project with a few tracked runs."""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.tracking.tracker import Tracker


def run_cli(root: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """The real ``conveyor`` command in ``root``, with no CONVEYOR_* settings leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["COLUMNS"] = "160"
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


@dataclass
class Project:
    root: Path
    run_ids: list[str]

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(self.root, *args, ok=ok)


@pytest.fixture
def project(tmp_path) -> Project:
    state = tmp_path / ".conveyor"
    tracker = Tracker(
        open_metadata_store(f"sqlite:///{state / 'conveyor.db'}"),
        open_artifact_store(str(state / "artifacts")),
    )
    (tmp_path / "report.txt").write_text("all good\n")
    ids = []
    for i, auc in enumerate((0.71, 0.93)):
        with tracker.start_run("flights", name=f"run{i}", tags={"team": "ops"}) as run:
            run.log_params({"lr": 0.1 * (i + 1), "depth": 6})
            run.log_metrics({"auc": auc, "f1": 0.5 + i / 10}, step=1)
            run.log_artifact(tmp_path / "report.txt", artifact_path="reports")
        ids.append(run.id)
    tracker.close()
    return Project(tmp_path, ids)


# --- pipelines: `conveyor run` and `conveyor runs lineage` ------------------------
# The commands are registered here as app.py registers them, unless it already does.

PIPELINE_SOURCE = """
from conveyor.core.pipeline import pipeline
from conveyor.core.step import step


@step
def load(n: int) -> list[int]:
    print(f"loading {n}")
    return list(range(n))


@step
def total(xs: list[int], scale: float = 1.0) -> float:
    if scale < 0:
        raise ValueError("scale must not be negative")
    return sum(xs) * scale


@pipeline
def training(n: int = 5, scale: float = 1.0):
    total(load(n), scale=scale)
"""


@dataclass
class PipelineProject:
    root: Path

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(self.root, *args, ok=ok)


@pytest.fixture
def pipeline_project(tmp_path) -> PipelineProject:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "training.py").write_text(PIPELINE_SOURCE)
    return PipelineProject(tmp_path)
