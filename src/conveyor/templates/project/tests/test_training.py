"""Level-2 CI for the training pipeline: it builds, and it runs end to end on a sample."""

from pathlib import Path

import pytest

import conveyor
from conveyor import lifecycle as lc

PROJECT = Path(__file__).resolve().parents[1]


def test_the_pipeline_builds_and_runs_on_a_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A smoke test on 4,000 flights: every stage runs, and the gate gives a verdict."""
    import sys

    sys.path.insert(0, str(PROJECT / "pipelines"))
    from training import training

    monkeypatch.chdir(tmp_path)
    conveyor.configure(project=tmp_path)
    sample = lc.load_flights(months=[1]).sample(4000, random_state=0)
    sample.to_parquet(tmp_path / "flights-sample.parquet", index=False)
    result = conveyor.run_pipeline(
        training, {"data": str(tmp_path / "flights-*.parquet"), "n_trials": 1}
    )
    assert result.status.value == "FINISHED", [s.error for s in result.steps.values()]
    outcome = result.outputs["register_model"]
    assert outcome["registered"] in (True, False)
    assert outcome["reasons"], "the gate says why"
