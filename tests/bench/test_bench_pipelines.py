"""Smoke test of the pipeline benchmark: one run per case, conveyor only (no ZenML install)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_pipelines.py"
PEERS = Path("/work/shared/peers/pipelines")


@pytest.mark.slow
@pytest.mark.skipif(not (PEERS / "shape.py").exists(), reason="needs the peers' shape.py")
def test_quick_conveyor_cases_pass_their_checks(tmp_path: Path) -> None:
    out = tmp_path / "pipelines.json"
    argv = [sys.executable, str(SCRIPT), "--quick", "--skip-zenml"]
    argv += ["--only", "a_int,c_cached", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    names = {c["name"] for c in data["cases"]}
    assert names == {"import", "a_int", "c_cached"}
    for case in data["cases"]:
        assert all(run["ok"] for run in case["runs"]), case
    assert "per step" in done.stdout
