import math

from conveyor.core.entities import ArtifactRecord, Metric, Run, RunStatus, SourceVersion


def test_only_running_is_not_final():
    assert [s for s in RunStatus if not s.is_final] == [RunStatus.RUNNING]


def test_nan_metrics_compare_equal():
    assert Metric("loss", math.nan, 1, 2) == Metric("loss", math.nan, 1, 2)
    assert Metric("loss", 1.0, 1, 2) != Metric("loss", 1.0, 2, 2)
    assert len({Metric("loss", 1.0, 1, 2), Metric("loss", 1.0, 1, 2)}) == 1


def test_artifact_uri_and_source():
    record = ArtifactRecord("r1", "plots/roc.png", "a" * 64, 3, "image/png", 0)
    assert record.uri == "runs:/r1/plots/roc.png"
    assert SourceVersion("abc", "def").dirty
    assert not SourceVersion("abc").dirty


def test_run_duration_and_history():
    run = Run("r", 1, "n", RunStatus.FINISHED, start_time=1000, end_time=3500)
    assert run.duration_ms == 2500
    assert run.metric_history("loss") == []
    assert Run("r", 1, "n", RunStatus.RUNNING, 0).duration_ms is None
