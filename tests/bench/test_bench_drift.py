"""Smoke test of the drift benchmark: tiny size, one repetition, conveyor and scipy only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_drift.py"
sys.path.insert(0, str(ROOT / "bench"))
from bench_drift import PEERS  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(
    not (PEERS / "bench_drift.py").exists(), reason="the peers' generator is absent"
)
def test_quick_run_measures_every_conveyor_case(tmp_path: Path) -> None:
    out = tmp_path / "drift.json"
    argv = [sys.executable, str(SCRIPT), "--quick", "--rows", "1500", "--skip-evidently"]
    done = subprocess.run(
        [*argv, "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-4000:] + done.stdout[-4000:]
    doc = json.loads(out.read_text())
    impls = {r["impl"] for r in doc["results"]}
    assert impls == {"scipy", "conveyor", "conveyor-parquet", "conveyor-profile", "conveyor-sketch"}
    for result in doc["results"]:
        assert result["compute_s"] > 0
        assert result["rss_mb"] > 0
        assert 0 < result["work_peak_mb"] <= result["rss_mb"]  # within the process peak
    exact = next(r for r in doc["results"] if r["impl"] == "conveyor")
    parquet = next(r for r in doc["results"] if r["impl"] == "conveyor-parquet")
    assert exact["columns"] == parquet["columns"]
    assert "drift: conveyor beside Evidently" in done.stdout
