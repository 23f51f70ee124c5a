import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor.errors import TrainingError, ValidationError
from conveyor.lifecycle._evaluate import Evaluation, evaluate
from conveyor.lifecycle._train import train
from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.stores.metadata.sql.models import SqlModelStore
from conveyor.tracking.tracker import Tracker

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cancer_split():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return train_test_split(X, y, test_size=0.4, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def logistic(cancer_split):
    X_train, _, y_train, _ = cancer_split
    return train(make_pipeline(StandardScaler(), LogisticRegression()), X_train, y_train).model


@pytest.fixture
def tracker(tmp_path):
    t = Tracker(
        open_metadata_store(f"sqlite:///{tmp_path}/c.db"), open_artifact_store(str(tmp_path / "a"))
    )
    yield t
    t.close()
    t.runs.close()


def reference_ece(y, p, bins=10):
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        if inside.any():
            total += inside.sum() / len(p) * abs(y[inside].mean() - p[inside].mean())
    return total


def test_binary_metrics_match_scikit_learn(cancer_split, logistic):
    _, X_test, _, y_test = cancer_split
    evaluation = evaluate(logistic, X_test, y_test, plots=False)
    proba = logistic.predict_proba(X_test)[:, 1]
    pred = (proba >= 0.5).astype(int)
    m = evaluation.metrics
    assert evaluation.task == "classification"
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_test, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y_test, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y_test, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y_test, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y_test, proba))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y_test, proba))
    assert m["ece"] == pytest.approx(reference_ece(y_test.to_numpy(), proba))
    assert evaluation.confusion == skm.confusion_matrix(y_test, pred).tolist()
    assert evaluation.labels == ["0", "1"]
    assert evaluation.rows == len(y_test)


def test_the_threshold_moves_the_predictions(cancer_split, logistic):
    _, X_test, _, y_test = cancer_split
    low = evaluate(logistic, X_test, y_test, threshold=0.05, plots=False)
    assert low.metrics["recall"] == 1.0
    assert (
        low.metrics["roc_auc"] == evaluate(logistic, X_test, y_test, plots=False).metrics["roc_auc"]
    )
    with pytest.raises(ValidationError, match="threshold"):
        evaluate(logistic, X_test, y_test, threshold=1.5)


def test_regression_metrics_and_residual_plot():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    trained = train(Ridge(alpha=0.5), X.iloc[:300], y.iloc[:300])
    evaluation = evaluate(trained, X.iloc[300:], y.iloc[300:])
    pred = trained.model.predict(X.iloc[300:])
    assert evaluation.task == "regression"
    assert evaluation.metrics["rmse"] == pytest.approx(
        skm.root_mean_squared_error(y.iloc[300:], pred)
    )
    assert evaluation.metrics["mae"] == pytest.approx(skm.mean_absolute_error(y.iloc[300:], pred))
    assert evaluation.metrics["r2"] == pytest.approx(skm.r2_score(y.iloc[300:], pred))
    assert evaluation.confusion == []
    assert list(evaluation.plots) == ["residuals"]
    assert evaluation.plots["residuals"].startswith(PNG)


def test_multiclass_macro_metrics():
    X, y = load_wine(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=1, stratify=y)
    model = train(make_pipeline(StandardScaler(), LogisticRegression()), X_train, y_train).model
    evaluation = evaluate(model, X_test, y_test)
    proba = model.predict_proba(X_test)
    pred = model.predict(X_test)
    m = evaluation.metrics
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_test, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y_test, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y_test, proba, multi_class="ovr"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y_test, proba))
    assert len(evaluation.confusion) == 3
    assert evaluation.plots == {}


def test_a_classifier_without_probabilities_gets_label_metrics(cancer_split):
    X_train, X_test, y_train, y_test = cancer_split
    model = train(make_pipeline(StandardScaler(), RidgeClassifier()), X_train, y_train).model
    evaluation = evaluate(model, X_test, y_test)
    assert set(evaluation.metrics) == {"accuracy", "precision", "recall", "f1"}
    assert evaluation.metrics["accuracy"] == pytest.approx(model.score(X_test, y_test))


def test_plots_are_png_images(cancer_split, logistic):
    _, X_test, _, y_test = cancer_split
    plots = evaluate(logistic, X_test, y_test).plots
    assert set(plots) == {"roc", "pr", "calibration"}
    assert all(png.startswith(PNG) for png in plots.values())


def test_slices_by_value_and_by_bins(cancer_split, logistic):
    _, X_test, _, y_test = cancer_split
    X = X_test.copy()
    X["size"] = np.where(X["mean radius"] > 14, "large", "small")
    X.loc[X.index[:3], "size"] = None
    bins = [0, 12, 15, 20]
    evaluation = evaluate(
        logistic, X, y_test, slices={"size": None, "mean radius": bins}, plots=False
    )
    sizes = evaluation.slices["size"]
    assert list(sizes) == ["large", "small", "(missing)"]
    assert sum(s["rows"] for s in sizes.values()) == len(X)
    radius = evaluation.slices["mean radius"]
    assert list(radius)[:3] == ["[0,12)", "[12,15)", "[15,20]"]
    outside = (X["mean radius"] > 20).sum()
    assert radius.get("(outside)", {"rows": 0})["rows"] == outside
    # A slice's metrics are the metrics of its rows.
    rows = (X["mean radius"] >= 12) & (X["mean radius"] < 15)
    alone = evaluate(logistic, X_test[rows], y_test[rows], plots=False)
    assert radius["[12,15)"]["rows"] == rows.sum()
    for name, value in alone.metrics.items():
        assert radius["[12,15)"][name] == pytest.approx(value)


def test_the_model_predicts_once(cancer_split, logistic):
    _, X_test, _, y_test = cancer_split

    class Counting:
        calls = 0
        classes_ = logistic.classes_
        feature_names_in_ = logistic.feature_names_in_

        def predict_proba(self, X):
            Counting.calls += 1
            return logistic.predict_proba(X)

        def predict(self, X):
            Counting.calls += 1
            return logistic.predict(X)

    slices = {"mean radius": [0, 10, 15, 30], "mean texture": [0, 15, 20, 40]}
    evaluate(Counting(), X_test, y_test, slices=slices)
    assert Counting.calls == 1


def test_bad_slices_are_validation_errors(cancer_split, logistic):
    _, X_test, _, y_test = cancer_split
    with pytest.raises(ValidationError, match=r"slices\['nope'\]: is not a column"):
        evaluate(logistic, X_test, y_test, slices={"nope": None})
    with pytest.raises(ValidationError, match="strictly increasing"):
        evaluate(logistic, X_test, y_test, slices={"mean radius": [10, 5]})
    with pytest.raises(ValidationError, match="distinct values"):
        evaluate(logistic, X_test, y_test, slices={"mean area": None})
    with pytest.raises(ValidationError, match="DataFrame"):
        evaluate(logistic, X_test.to_numpy(), y_test, slices={"x": None})


def test_nan_predictions_are_an_error(cancer_split, logistic):
    _, X_test, _, y_test = cancer_split

    class Broken:
        classes_ = np.array([0, 1])

        def predict_proba(self, X):
            out = logistic.predict_proba(X)
            out[3] = np.nan
            return out

    with pytest.raises(TrainingError, match="NaN or infinite for 1 of"):
        evaluate(Broken(), X_test, y_test)


def test_unknown_labels_are_named(cancer_split, logistic):
    _, X_test, _, y_test = cancer_split
    with pytest.raises(ValidationError, match=r"labels the model does not know: \['7'\]"):
        evaluate(logistic, X_test, y_test.replace({1: 7}))


def test_log_to_a_run(cancer_split, logistic, tracker):
    _, X_test, _, y_test = cancer_split
    X = X_test.assign(group=np.where(X_test["mean radius"] > 14, "a", "b"))
    evaluation = evaluate(logistic, X, y_test, slices={"group": None})
    with tracker.start_run("lifecycle") as run:
        evaluation.log_to(run)
    stored = tracker.get_run(run.id)
    assert stored.metrics["roc_auc"] == pytest.approx(evaluation.metrics["roc_auc"])
    assert stored.metrics["slice.group=a.rows"] == evaluation.slices["group"]["a"]["rows"]
    assert "slice.group=b.accuracy" in stored.metrics
    paths = {a.path for a in tracker.list_artifacts(run.id)}
    assert {"evaluation/roc.png", "evaluation/pr.png", "evaluation/calibration.png"} <= paths
    summary = tracker.artifacts.get_bytes(
        next(a.sha256 for a in tracker.list_artifacts(run.id) if a.path.endswith(".json"))
    )
    assert json.loads(summary)["metrics"] == pytest.approx(evaluation.metrics)


def test_a_registered_model_evaluates_like_the_original(tmp_path, cancer_split, logistic):
    _, X_test, _, y_test = cancer_split
    models = SqlModelStore(f"sqlite:///{tmp_path / 'r.db'}")
    registry = Registry(models, open_artifact_store(str(tmp_path / "r")))
    try:
        registry.register_model("cancer", logistic, X_test.head())
        loaded = registry.load_model("cancer")
        again = evaluate(loaded, X_test, y_test, plots=False)
    finally:
        models.close()
    assert again.metrics == pytest.approx(evaluate(logistic, X_test, y_test).metrics)


def test_an_evaluation_round_trips_through_its_dict(cancer_split, logistic):
    _, X_test, _, y_test = cancer_split
    evaluation = evaluate(logistic, X_test, y_test, slices={"mean radius": [0, 15, 30]})
    back = Evaluation.from_dict(json.loads(json.dumps(evaluation.to_dict())), evaluation.plots)
    assert back == evaluation


def test_columns_the_model_does_not_use_are_left_out(cancer_split):
    X_train, X_test, y_train, y_test = cancer_split
    few = ["mean radius", "mean texture"]
    model = train(LogisticRegression(), X_train[few], y_train).model
    extra = X_test[[*few, "mean area"]].assign(region=pd.Series("north", index=X_test.index))
    evaluation = evaluate(model, extra, y_test, slices={"region": None}, plots=False)
    assert evaluation.slices["region"]["north"]["rows"] == len(y_test)
