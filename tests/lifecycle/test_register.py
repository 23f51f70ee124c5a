import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor.core.entities import RunStatus, SourceVersion
from conveyor.core.pipeline import pipeline
from conveyor.core.step import step
from conveyor.errors import NotFoundError, ValidationError
from conveyor.lifecycle._evaluate import evaluate
from conveyor.lifecycle._register import register_version
from conveyor.lifecycle._train import train
from conveyor.lifecycle._validate import validate
from conveyor.registry import Registry
from conveyor.runtime.runner import run_pipeline
from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.stores.metadata.sql.models import SqlModelStore
from conveyor.tracking.tracker import Tracker

DIGEST = "ab" * 32


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
    return train(make_pipeline(StandardScaler(), LogisticRegression()), X_train, y_train)


@pytest.fixture(scope="module")
def weak(cancer):
    X_train, y_train, _ = cancer
    one = ColumnTransformer([("one", StandardScaler(), ["mean smoothness"])])
    return train(make_pipeline(one, LogisticRegression()), X_train, y_train)


@pytest.fixture
def registry(tmp_path):
    models = SqlModelStore(f"sqlite:///{tmp_path / 'conveyor.db'}")
    yield Registry(models, open_artifact_store(str(tmp_path / "artifacts")))
    models.close()


def test_a_passed_gate_registers_with_metrics_tags_and_fingerprints(cancer, strong, weak, registry):
    _, _, test = cancer
    X_test, y_test = test.drop(columns=["target"]), test["target"]
    evaluation = evaluate(strong, X_test, y_test)
    decision = validate(strong, test, "target", champion=weak.model)
    profile = b'{"columns": {}}'
    version = register_version(
        registry,
        "cancer",
        strong,
        X_test.head(),
        evaluation=evaluation,
        decision=decision,
        data_digests={"train": DIGEST},
        profile=profile,
        code=SourceVersion(git_sha="c0ffee", diff_hash="d1ff"),
    )
    assert version.version == 1
    assert version.metrics == pytest.approx(evaluation.metrics)
    assert version.data_digests["train"] == DIGEST
    tags = version.tags
    assert tags["gate.passed"] == "true"
    assert json.loads(tags["gate.reasons"]) == decision.reasons
    assert tags["gate.metric"] == "roc_auc"
    assert float(tags["gate.delta"]) > 0
    assert float(tags["gate.ci_low"]) > 0
    assert version.profile_sha256 == hashlib.sha256(profile).hexdigest()
    assert registry.artifacts.get_bytes(version.profile_sha256) == profile
    assert (version.source.git_sha, version.source.diff_hash) == ("c0ffee", "d1ff")
    assert version.profile_sha256 in registry.models.referenced_digests()  # kept by gc
    loaded = registry.load_model("cancer/1")
    np.testing.assert_allclose(loaded.predict_proba(X_test), strong.model.predict_proba(X_test))


def test_a_failed_gate_is_refused(cancer, strong, weak, registry):
    _, _, test = cancer
    decision = validate(weak, test, "target", champion=strong.model)
    assert not decision.passed
    with pytest.raises(
        ValidationError, match=r"refusing to register 'cancer': fail: roc_auc 0\.6890 < 0\.7000"
    ):
        register_version(registry, "cancer", weak, test.head(), decision=decision)
    with pytest.raises(NotFoundError):
        registry.get_model("cancer")  # nothing was stored
    with pytest.raises(ValidationError, match="reason: is required with force=True"):
        register_version(registry, "cancer", weak, test.head(), decision=decision, force=True)


def test_force_with_a_reason_records_it(cancer, strong, weak, registry):
    _, _, test = cancer
    X_test = test.drop(columns=["target"])
    decision = validate(weak, test, "target", champion=strong.model)
    version = register_version(
        registry,
        "cancer",
        weak,
        X_test.head(),
        decision=decision,
        force=True,
        alias="staging",
        reason="needed for the demo",
    )
    assert version.tags["gate.passed"] == "false"
    assert version.tags["gate.forced"] == "true"
    [event] = registry.history("cancer", "staging")
    assert event.reason == "needed for the demo"


def test_the_alias_moves_with_the_reason(cancer, strong, registry):
    _, _, test = cancer
    X_test = test.drop(columns=["target"])
    decision = validate(strong, test, "target")
    first = register_version(
        registry,
        "cancer",
        strong,
        X_test.head(),
        decision=decision,
        alias="production",
        reason="first model",
        actor="ci",
    )
    second = register_version(
        registry, "cancer", strong, X_test.head(), decision=decision, alias="production"
    )
    assert registry.get_alias("cancer", "production").version == second.version == 2
    history = registry.history("cancer", "production")
    assert [(e.from_version, e.to_version) for e in history] == [(None, 1), (1, 2)]
    assert history[0].reason == "first model"
    assert history[0].actor == "ci"
    assert history[1].reason.startswith("version 2 passed its gate: pass: roc_auc")
    assert first.version == 1


def test_an_alias_needs_a_gate_decision(cancer, strong, registry):
    _, _, test = cancer
    with pytest.raises(ValidationError, match="decision: is required to move an alias"):
        register_version(registry, "cancer", strong, test.head(), alias="production")
    version = register_version(registry, "cancer", strong, test.drop(columns=["target"]).head())
    assert "gate.passed" not in version.tags


def test_a_profile_digest_must_be_a_sha256(cancer, strong, registry):
    _, _, test = cancer
    with pytest.raises(ValidationError, match="profile_sha256"):
        register_version(registry, "cancer", strong, test.head(), profile="abc")
    version = register_version(
        registry, "cancer", strong, test.drop(columns=["target"]).head(), profile=DIGEST
    )
    assert version.profile_sha256 == DIGEST


# -- the stages as steps of one pipeline ---------------------------------------


@step(outputs=["X_train", "y_train", "X_test", "y_test", "test"])
def load_cancer() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray, pd.DataFrame]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.4, random_state=0, stratify=y
    )
    return X_train, y_train.to_numpy(), X_test, y_test.to_numpy(), X_test.assign(target=y_test)


def test_train_evaluate_validate_register_as_a_pipeline(tmp_path, registry):
    tracker = Tracker(
        open_metadata_store(f"sqlite:///{tmp_path}/c.db"), open_artifact_store(str(tmp_path / "a"))
    )

    @pipeline
    def cancer_model():
        X_train, y_train, X_test, y_test, test = load_cancer()
        trained = train(make_pipeline(StandardScaler(), LogisticRegression()), X_train, y_train)
        evaluation = evaluate(trained, X_test, y_test, slices={"mean radius": [0, 15, 30]})
        decision = validate(trained, test, "target", slices={"mean radius": [0, 15, 30]})
        register_version(
            registry,
            "cancer",
            trained,
            X_test,
            evaluation=evaluation,
            decision=decision,
            alias="staging",
        )

    try:
        result = run_pipeline(cancer_model, tracker=tracker)
        assert result.status is RunStatus.FINISHED, result
        stored = result.steps["register_version"].output
        assert stored.version == 1
        assert stored.tags["gate.passed"] == "true"
        assert registry.get_alias("cancer", "staging").version == 1
        outputs = result.steps["train"].outputs
        assert outputs["output"].model.predict(load_cancer.fn()[2]).shape == (228,)
        serializers = {a.path for a in tracker.list_artifacts(result.steps["train"].run_id)}
        assert "outputs/output.zip" in serializers
    finally:
        tracker.close()
        tracker.runs.close()


def test_the_chosen_hyperparameters_are_recorded(cancer, registry):
    from sklearn.linear_model import LogisticRegression

    from conveyor.lifecycle import train

    X_train, y_train, test = cancer
    trained = train(LogisticRegression(C=0.5, max_iter=5000), X_train, y_train)
    version = register_version(registry, "cancer", trained, test.drop(columns=["target"]).head())
    assert version.tags["param.C"] == "0.5"
