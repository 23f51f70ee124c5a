"""``conveyor predict``: a real process predicting a Parquet file, and refusing bad rows."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store, open_model_store


@pytest.fixture
def scored_project(project):
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4]
    state = project.root / ".conveyor"
    store = open_model_store(f"sqlite:///{state / 'conveyor.db'}")
    registry = Registry(store, open_artifact_store(str(state / "artifacts")))
    model = LogisticRegression(max_iter=1000).fit(X, y)
    registry.register_model("flights", model, X.head(5))
    registry.set_alias("flights", "production", 1)
    store.close()
    frame = X.assign(flight_id=np.arange(len(X)) + 1000)
    frame.to_parquet(project.root / "in.parquet", index=False)
    return project, model, X


def test_predict_writes_keys_and_predictions(scored_project):
    project, model, X = scored_project
    done = project.cli(
        "predict",
        "flights@production",
        "--input",
        "in.parquet",
        "--output",
        "out.parquet",
        "--chunk-rows",
        "100",
    )
    assert "569 rows predicted by flights/1 in 6 chunk(s)" in done.stdout
    out = pd.read_parquet(project.root / "out.parquet")
    assert out["flight_id"].tolist() == list(range(1000, 1569))
    assert out["prediction"].tolist() == model.predict(X).tolist()
    assert "probability" in out.columns


def test_predict_refuses_a_bad_row_in_one_line(scored_project):
    project, _, X = scored_project
    bad = X.copy()
    bad.iloc[321, 0] = np.nan
    bad.to_parquet(project.root / "bad.parquet", index=False)
    done = project.cli(
        "predict", "flights/1", "--input", "bad.parquet", "--output", "out.parquet", ok=False
    )
    assert done.returncode == 1
    assert "row 321" in done.stderr
    assert X.columns[0] in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project.root / "out.parquet").exists()
    done = project.cli(
        "predict", "flights/1", "--input", "nope.parquet", "--output", "o.parquet", ok=False
    )
    assert done.returncode == 1
    assert "--input" in done.stderr
