import json
import time

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score, root_mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor.errors import ValidationError
from conveyor.lifecycle._evaluate import model_scores
from conveyor.lifecycle._validate import GateDecision, validate
from conveyor.lifecycle.metrics import Scores, paired_bootstrap
from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store
from conveyor.stores.metadata.sql.models import SqlModelStore


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.4, random_state=0, stratify=y
    )
    return X_train, y_train, X_test.assign(target=y_test)


@pytest.fixture(scope="module")
def strong(cancer):
    X_train, y_train, _ = cancer
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X_train, y_train)


@pytest.fixture(scope="module")
def weak(cancer):
    X_train, y_train, _ = cancer
    one = ColumnTransformer([("one", StandardScaler(), ["mean smoothness"])])
    return make_pipeline(one, LogisticRegression()).fit(X_train, y_train)


@pytest.fixture
def registry(tmp_path):
    models = SqlModelStore(f"sqlite:///{tmp_path / 'conveyor.db'}")
    yield Registry(models, open_artifact_store(str(tmp_path / "artifacts")))
    models.close()


class Degraded:
    """The strong model, with its probabilities reversed for large tumours."""

    def __init__(self, model):
        self.model = model
        self.classes_ = model.classes_
        self.feature_names_in_ = model.feature_names_in_

    def predict_proba(self, X):
        proba = self.model.predict_proba(X)
        large = (X["mean radius"] >= 15).to_numpy()
        proba[large] = proba[large][:, ::-1]
        return proba


def reference_deltas(metric, truth, first, second, n_bootstrap, seed):
    """One resample at a time, with scikit-learn (the index draws match the vectorised code)."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(truth), size=(n_bootstrap, len(truth)))
    out = []
    for rows in index:
        if metric == "roc_auc":
            if len(np.unique(truth[rows])) < 2:
                out.append(np.nan)
                continue
            out.append(
                roc_auc_score(truth[rows], first[rows]) - roc_auc_score(truth[rows], second[rows])
            )
        else:
            out.append(
                root_mean_squared_error(truth[rows], first[rows])
                - root_mean_squared_error(truth[rows], second[rows])
            )
    return np.asarray(out)


def test_the_vectorised_bootstrap_matches_a_slow_reference():
    rng = np.random.default_rng(3)
    n = 60  # small enough that some resamples hold a single class
    truth = (rng.random(n) < 0.08).astype(float)
    first = np.round(rng.random(n) * 0.6 + truth * 0.3, 1)  # ties on purpose
    second = rng.random(n)
    a = Scores("binary", truth, (first >= 0.5).astype(float), first)
    b = Scores("binary", truth, (second >= 0.5).astype(float), second)
    fast = paired_bootstrap("roc_auc", a, b, n_bootstrap=300, seed=11)
    slow = reference_deltas("roc_auc", truth, first, second, 300, 11)
    assert np.isnan(slow).any()
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    np.testing.assert_allclose(fast[~np.isnan(fast)], slow[~np.isnan(slow)], atol=1e-12)

    values = rng.normal(size=n)
    p, q = values + rng.normal(size=n), values + 2 * rng.normal(size=n)
    fast = paired_bootstrap(
        "rmse",
        Scores("regression", values, p),
        Scores("regression", values, q),
        n_bootstrap=200,
        seed=5,
    )
    np.testing.assert_allclose(fast, reference_deltas("rmse", values, p, q, 200, 5), atol=1e-12)


def test_the_gate_interval_is_the_percentile_interval_of_the_paired_deltas(cancer, strong, weak):
    _, _, test = cancer
    decision = validate(strong, test, "target", champion=weak, n_bootstrap=400, seed=2)
    truth = test["target"].to_numpy().astype(float)
    features = test.drop(columns=["target"])
    deltas = reference_deltas(
        "roc_auc",
        truth,
        strong.predict_proba(features)[:, 1],
        weak.predict_proba(features)[:, 1],
        400,
        2,
    )
    low, high = np.quantile(deltas[~np.isnan(deltas)], [0.025, 0.975])
    comparison = decision.evidence["comparison"]
    assert comparison["ci_low"] == pytest.approx(low)
    assert comparison["ci_high"] == pytest.approx(high)
    assert comparison["valid_resamples"] == 400


def test_1000_resamples_of_20000_rows_take_under_two_seconds():
    rng = np.random.default_rng(0)
    n = 20_000
    truth = (rng.random(n) < 0.2).astype(float)
    first, second = rng.random(n) + truth * 0.2, rng.random(n) + truth * 0.1
    a = Scores("binary", truth, (first > 0.6).astype(float), first)
    b = Scores("binary", truth, (second > 0.6).astype(float), second)
    started = time.perf_counter()
    deltas = paired_bootstrap("roc_auc", a, b, n_bootstrap=1000, seed=0)
    assert time.perf_counter() - started < 8.0  # about 0.5 s; a guard against per-row loops
    assert np.isfinite(deltas).all()
    assert deltas.mean() > 0


def test_a_better_candidate_passes(cancer, strong, weak):
    _, _, test = cancer
    decision = validate(strong, test, "target", champion=weak)
    assert isinstance(decision, GateDecision)
    assert decision.passed, decision.reasons
    assert decision.failures == []
    assert decision.reasons[0].startswith("pass: roc_auc")
    assert "vs champion" in decision.reasons[1]
    assert decision.evidence["comparison"]["delta"] > 0.1
    json.dumps(decision.evidence)  # evidence is JSON-able


def test_a_worse_candidate_fails_as_a_result_not_an_exception(cancer, strong, weak):
    _, _, test = cancer
    decision = validate(weak, test, "target", champion=strong, thresholds={"roc_auc": 0.6})
    assert not decision.passed
    assert decision.failures == [r for r in decision.reasons if "vs champion" in r]
    assert "non-inferior" in decision.failures[0]
    assert decision.evidence["comparison"]["ci_high"] < 0


def test_the_same_model_is_non_inferior_but_no_improvement(cancer, strong):
    _, _, test = cancer
    assert validate(strong, test, "target", champion=strong).passed
    decision = validate(strong, test, "target", champion=strong, require_improvement=True)
    assert not decision.passed
    assert "must improve by more than" in decision.failures[0]


def test_a_margin_lets_a_slightly_worse_candidate_through(cancer, strong, weak):
    _, _, test = cancer
    strict = validate(weak, test, "target", champion=strong, thresholds={})
    lenient = validate(weak, test, "target", champion=strong, thresholds={}, min_delta=0.5)
    assert not strict.passed
    assert lenient.passed


def test_a_slice_regression_fails_the_gate(cancer, strong):
    _, _, test = cancer
    bins = {"mean radius": [0, 12, 15, 30]}
    decision = validate(
        Degraded(strong),
        test,
        "target",
        champion=strong,
        slices=bins,
        thresholds={},
        min_delta=1.0,
        min_slice_rows=10,
    )
    assert not decision.passed
    [failure] = decision.failures
    assert "mean radius=[15,30]" in failure
    table = decision.evidence["slices"]["mean radius"]
    assert table["[15,30]"]["candidate"] < table["[15,30]"]["champion"]
    assert set(table) >= {"[0,12)", "[12,15)", "[15,30]"}


def test_no_champion_passes_on_thresholds_alone(cancer, strong, weak):
    _, _, test = cancer
    decision = validate(strong, test, "target")
    assert decision.passed
    assert any("no champion" in r for r in decision.reasons)
    failed = validate(weak, test, "target", thresholds={"roc_auc": 0.95, "ece": 0.5})
    assert not failed.passed
    assert failed.failures[0].startswith("fail: roc_auc")
    assert any(r.startswith("pass: ece") and "<=" in r for r in failed.reasons)


def test_a_champion_from_the_registry(cancer, strong, weak, registry):
    _, _, test = cancer
    features = test.drop(columns=["target"])
    missing = validate(strong, test, "target", champion="cancer@production", registry=registry)
    assert missing.passed
    assert any("not found" in r for r in missing.reasons)
    version = registry.register_model("cancer", weak, features.head())
    registry.set_alias("cancer", "production", version.version)
    decision = validate(strong, test, "target", champion="cancer@production", registry=registry)
    assert decision.passed
    assert decision.evidence["champion"]["ref"] == "cancer@production (cancer/1)"
    with pytest.raises(ValidationError, match="registry"):
        validate(strong, test, "target", champion="cancer@production")


def test_regression_gate_with_error_metric_ceilings():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    test = X.iloc[300:].assign(progression=y.iloc[300:])
    ridge = Ridge(alpha=0.1).fit(X.iloc[:300], y.iloc[:300])
    mean = DummyRegressor().fit(X.iloc[:300], y.iloc[:300])
    decision = validate(ridge, test, "progression", thresholds={"rmse": 70.0}, champion=mean)
    assert decision.passed, decision.reasons
    assert decision.evidence["metric"] == "rmse"
    assert decision.evidence["comparison"]["delta"] > 0  # positive means better, for errors too
    assert not validate(ridge, test, "progression", thresholds={"rmse": 10.0}).passed


def test_bad_arguments_are_validation_errors(cancer, strong):
    _, _, test = cancer
    with pytest.raises(ValidationError, match="target"):
        validate(strong, test, "nope")
    with pytest.raises(ValidationError, match="unknown metric"):
        validate(strong, test, "target", thresholds={"auc": 0.7})
    with pytest.raises(ValidationError, match="confidence"):
        validate(strong, test, "target", confidence=95)
    with pytest.raises(ValidationError, match="cannot be bootstrapped"):
        validate(strong, test, "target", metric="rmse")


def test_scores_code_the_positive_class_as_the_second_class(cancer, strong):
    _, _, test = cancer
    labels = test["target"].map({0: "malignant", 1: "benign"})
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        test.drop(columns=["target"]), labels
    )
    scores = model_scores(model, test.drop(columns=["target"]), labels)
    assert scores.classes == ("benign", "malignant")
    np.testing.assert_array_equal(scores.y, (labels == "malignant").to_numpy().astype(float))
