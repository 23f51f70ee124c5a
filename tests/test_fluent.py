"""The top-level API exactly as the README shows it."""

import pytest

import conveyor
from conveyor.errors import NoActiveRunError, StateError


@pytest.fixture(autouse=True)
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("CONVEYOR_METADATA_URI", "CONVEYOR_ARTIFACT_URI", "CONVEYOR_EXPERIMENT"):
        monkeypatch.delenv(var, raising=False)
    conveyor.configure(project=tmp_path)
    yield tmp_path
    conveyor.end_run()
    conveyor.configure(project=tmp_path)


def test_readme_tour(project):
    (project / "confusion.png").write_bytes(b"png bytes")
    with conveyor.start_run(experiment="flights", name="baseline", tags={"team": "ops"}) as run:
        conveyor.log_params({"max_depth": 6, "lr": 0.1})
        conveyor.log_metric("loss", 0.52, step=1)
        conveyor.log_metrics({"auc": 0.91, "f1": 0.64}, step=1)
        conveyor.log_artifact("confusion.png")
        conveyor.set_tag("stage", "dev")
    got = conveyor.get_run(run.id)
    assert got.params == {"max_depth": "6", "lr": "0.1"}
    assert got.metrics == {"loss": 0.52, "auc": 0.91, "f1": 0.64}
    assert got.tags == {"team": "ops", "stage": "dev"}
    assert got.status.value == "FINISHED"
    assert [a.path for a in got.artifacts] == ["confusion.png"]
    assert [m.value for m in got.metric_history("loss")] == [0.52]
    out = conveyor.download_artifact(run.id, "confusion.png", dest="out/")
    assert out.read_bytes() == b"png bytes"
    found = conveyor.search_runs(
        experiment="flights",
        filter="metrics.auc > 0.8 and params.lr = '0.1' and tags.team = 'ops'",
        order_by=["metrics.auc DESC"],
        max_results=100,
    )
    assert [r.id for r in found] == [run.id]
    frame = conveyor.search_runs(experiment="flights", as_frame=True)
    assert frame.loc[0, "metrics.auc"] == 0.91
    # the default store lives in the project
    assert (project / ".conveyor" / "conveyor.db").is_file()


def test_logging_without_a_run():
    with pytest.raises(NoActiveRunError, match="start_run"):
        conveyor.log_metric("x", 1.0)


def test_nested_runs():
    with conveyor.start_run(name="parent") as parent:
        with pytest.raises(StateError, match="nested=True"):
            conveyor.start_run()
        with conveyor.start_run(name="child", nested=True) as child:
            assert conveyor.active_run() is child
        assert conveyor.active_run() is parent
    assert conveyor.get_run(child.id).parent_run_id == parent.id
    assert conveyor.active_run() is None


def test_settings_choose_the_experiment(monkeypatch, project):
    monkeypatch.setenv("CONVEYOR_EXPERIMENT", "from-env")
    conveyor.configure(project=project)
    with conveyor.start_run() as run:
        pass
    exp = conveyor.get_tracker().runs.get_experiment("from-env")
    assert conveyor.get_run(run.id).experiment_id == exp.id


def test_register_and_load_a_model_through_the_top_level_api():
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    with conveyor.start_run(experiment="models") as run:
        model = LogisticRegression(max_iter=5000).fit(X, y)
        conveyor.log_metric("auc", 0.99)
        version = conveyor.register_model("cancer", model, input_example=X.head(5))
    assert (version.name, version.version, version.run_id) == ("cancer", 1, run.id)
    assert version.metrics["auc"] == 0.99
    conveyor.get_registry().set_alias("cancer", "production", 1, reason="first")
    loaded = conveyor.load_model("cancer@production")
    assert loaded.version.version == 1
    np.testing.assert_array_equal(loaded.predict(X.head(20)), model.predict(X.head(20)))
    with pytest.raises(conveyor.NotFoundError, match="production"):
        conveyor.load_model("cancer@staging")


def test_the_issue_pipeline_through_the_top_level_api(project):
    import pandas as pd

    data = project / "flights.parquet"
    pd.DataFrame({"x": range(10), "y": [i % 2 for i in range(10)]}).to_parquet(data)

    @conveyor.step
    def load(path: str) -> pd.DataFrame:
        return pd.read_parquet(path)

    @conveyor.step(retries=2)
    def fit(df: pd.DataFrame, max_depth: int = 6) -> dict:
        return {"rows": len(df), "max_depth": max_depth}

    @conveyor.pipeline
    def training(path: str = str(data), max_depth: int = 6):
        df = load(path)
        fit(df, max_depth=max_depth)

    result = conveyor.run_pipeline(training, params={"max_depth": 8}, cache=True)
    assert result.status.value == "FINISHED"
    assert result.outputs["fit"] == {"rows": 10, "max_depth": 8}
    again = conveyor.run_pipeline(training, params={"max_depth": 8}, cache=True)
    assert again.steps["fit"].cached
    assert conveyor.get_run(again.run_id).status.value == "FINISHED"
    assert fit(pd.DataFrame({"a": [1]}), max_depth=2) == {"rows": 1, "max_depth": 2}  # a plain call
