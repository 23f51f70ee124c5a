import hashlib
import subprocess
import sys
import textwrap
import threading
import time

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from conveyor.core.entities import SourceVersion
from conveyor.errors import (
    NotFoundError,
    StateError,
    UnsupportedModelError,
    ValidationError,
)
from conveyor.registry import LoadedModel, Registry
from conveyor.registry.registry import default_actor
from conveyor.stores.backends import open_artifact_store
from conveyor.stores.metadata.sql.models import SqlModelStore
from conveyor.stores.metadata.sql.store import SqlMetadataStore
from conveyor.tracking.tracker import Tracker


class Memorizer(LogisticRegression):
    """A user-defined estimator: only pickle (trusted) can hold it."""


@pytest.fixture
def small(cancer):
    """Four columns of the breast cancer data: quick to fit."""
    X, y = cancer
    return X.iloc[:, :4], y


def _same_predictions(loaded, model, X):
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    if hasattr(model, "predict_proba"):
        np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-6)


# -- round trips -----------------------------------------------------------


def test_logistic_regression_round_trip(registry, cancer, logistic):
    X, _ = cancer
    model = logistic
    version = registry.register_model("cancer", model, input_example=X.head(5))
    assert (version.name, version.version, version.format, version.trusted) == (
        "cancer",
        1,
        "skops",
        False,
    )
    loaded = registry.load_model("cancer")
    assert isinstance(loaded, LoadedModel)
    assert loaded.version == version
    _same_predictions(loaded, model, X)
    loaded.check()


def test_gradient_boosting_round_trip(registry, cancer):
    X, y = cancer
    model = GradientBoostingClassifier(n_estimators=20).fit(X, y)
    registry.register_model("gb", model, X.head(5))
    _same_predictions(registry.load_model("gb/1"), model, X)


def test_a_pipeline_with_one_hot_encoding_on_a_frame(registry, mixed):
    X, y = mixed
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["size", "texture_band"]),
            ("num", StandardScaler(), ["mean radius", "mean texture", "mean smoothness"]),
        ]
    )
    model = make_pipeline(prep, LogisticRegression(max_iter=5000)).fit(X, y)
    version = registry.register_model("mixed", model, X.head(5))
    by_name = {c.name: c for c in version.signature.columns}
    assert by_name["size"].dtype == "string"
    assert by_name["texture_band"].categories == ("lo", "mid", "hi")
    loaded = registry.load_model("mixed")
    _same_predictions(loaded, model, X)
    reordered = X[list(reversed(X.columns))].assign(unused=1)
    np.testing.assert_array_equal(loaded.predict(reordered), model.predict(X))
    with pytest.raises(ValidationError, match="column 'size': is required"):
        loaded.predict(X.drop(columns=["size"]))


def test_lightgbm_and_xgboost_round_trips(registry, cancer, diabetes):
    X, y = cancer
    Xd, yd = diabetes
    models = [
        ("lgb-clf", lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y), X),
        ("lgb-reg", lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(Xd, yd), Xd),
        ("xgb-clf", xgb.XGBClassifier(n_estimators=20).fit(X, y), X),
        ("xgb-reg", xgb.XGBRegressor(n_estimators=20).fit(Xd, yd), Xd),
    ]
    for name, model, data in models:
        version = registry.register_model(name, model, data.head(5))
        assert version.format == name.split("-")[0].replace("lgb", "lightgbm").replace(
            "xgb", "xgboost"
        )
        assert version.format in version.environment.packages
        loaded = registry.load_model(name)
        _same_predictions(loaded, model, data)
        assert loaded.has_predict_proba == name.endswith("clf")


def test_lightgbm_categoricals_accept_strings_when_serving(registry, mixed):
    X, y = mixed
    X = X.drop(columns=["size"])
    model = lgb.LGBMClassifier(n_estimators=20, min_child_samples=5, verbose=-1).fit(X, y)
    registry.register_model("banded", model, X.head(5))
    loaded = registry.load_model("banded")
    as_strings = X.assign(texture_band=X["texture_band"].astype(str))
    np.testing.assert_allclose(loaded.predict_proba(as_strings), model.predict_proba(X))


def test_onnx_round_trip(registry, cancer):
    from skl2onnx import to_onnx

    X, y = cancer
    Xf = X.to_numpy(np.float32)
    model = LogisticRegression(max_iter=5000).fit(Xf, y)
    onx = to_onnx(model, Xf[:1], options={"zipmap": False})
    version = registry.register_model("onnx", onx, Xf[:5])
    assert (version.format, version.signature.kind, version.signature.shape) == (
        "onnx",
        "tensor",
        (None, 30),
    )
    assert {"onnx", "onnxruntime"} <= set(version.environment.packages)
    loaded = registry.load_model("onnx")
    np.testing.assert_array_equal(loaded.predict(Xf), model.predict(Xf))
    np.testing.assert_allclose(loaded.predict_proba(Xf), model.predict_proba(Xf), atol=1e-5)
    with pytest.raises(ValidationError, match=r"shape \(rows, 30\)"):
        loaded.predict(Xf[:, :3])


def test_numpy_trained_models_take_numpy(registry, diabetes):
    X, y = diabetes
    array = X.to_numpy()
    model = Ridge().fit(array, y)
    registry.register_model("ridge", model, array[:5])
    loaded = registry.load_model("ridge")
    np.testing.assert_allclose(loaded.predict(array), model.predict(array))
    np.testing.assert_array_equal(loaded.input_example, array[:5])
    assert not loaded.has_predict_proba
    with pytest.raises(StateError, match="no predict_proba"):
        loaded.predict_proba(array)


# -- trust -----------------------------------------------------------------


def test_an_untrusted_custom_class_is_refused_clearly(registry, small):
    X, y = small
    model = Memorizer().fit(X, y)
    with pytest.raises(UnsupportedModelError, match="pass trusted=True") as info:
        registry.register_model("custom", model, X.head(5))
    assert "test_registry.Memorizer" in str(info.value)
    assert "skops" in str(info.value)
    with pytest.raises(NotFoundError):
        registry.get_model("custom")  # nothing was recorded


def test_trusted_pickle_works_and_is_recorded(registry, small):
    X, y = small
    model = Memorizer().fit(X, y)
    version = registry.register_model("custom", model, X.head(5), trusted=True)
    assert (version.format, version.trusted) == ("pickle", True)
    assert registry.get_version("custom", 1).trusted
    _same_predictions(registry.load_model("custom"), model, X)


def test_trusted_is_recorded_only_when_the_format_needs_it(registry, cancer, logistic):
    X, _ = cancer
    version = registry.register_model("plain", logistic, X.head(5), trusted=True)
    assert (version.format, version.trusted) == ("skops", False)


def test_loading_pickle_needs_the_recorded_flag(registry, small, tmp_path):
    X, y = small
    registry.register_model("custom", Memorizer().fit(X, y), X.head(5), trusted=True)
    import sqlite3

    with sqlite3.connect(tmp_path / "conveyor.db") as conn:
        conn.execute("UPDATE model_versions SET trusted = 0")
    with pytest.raises(StateError, match=r"runs code when loaded.*not registered with trusted"):
        registry.load_model("custom/1")


def test_tampered_package_bytes_are_detected(registry, cancer, logistic, tmp_path):
    from conveyor.errors import ArtifactCorruptedError

    X, _ = cancer
    version = registry.register_model("cancer", logistic, X.head(5))
    sha = version.files["model.skops"]
    blob = tmp_path / "artifacts" / "cas" / sha[:2] / sha
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorruptedError, match=sha):
        registry.load_model("cancer")


# -- lineage and metadata --------------------------------------------------


def test_metrics_and_code_come_from_the_run(tmp_path, cancer, logistic):
    X, _ = cancer
    runs = SqlMetadataStore(f"sqlite:///{tmp_path / 'c.db'}")
    tracker = Tracker(runs, open_artifact_store(str(tmp_path / "a")))
    registry = Registry(SqlModelStore(f"sqlite:///{tmp_path / 'c.db'}"), tracker.artifacts, tracker)
    source = SourceVersion("f" * 40, "d" * 64)
    with tracker.start_run("cancer", source=source) as run:
        run.log_metrics({"auc": 0.97, "f1": 0.9})
        model = logistic
        train_digest = hashlib.sha256(b"train split").hexdigest()
        version = registry.register_model(
            "cancer",
            model,
            X.head(5),
            run_id=run.id,
            metrics={"f1": 0.95},
            data_digests={"train": train_digest},
            tags={"team": "risk"},
            description="baseline",
        )
    assert version.metrics == {"auc": 0.97, "f1": 0.95}
    assert (version.run_id, version.source) == (run.id, source)
    assert version.data_digests["train"] == train_digest
    example_sha = version.files["input_example.parquet"]
    assert version.data_digests["input_example"] == example_sha
    assert (dict(version.tags), version.description) == ({"team": "risk"}, "baseline")
    with pytest.raises(NotFoundError, match="no run"):
        registry.register_model("cancer", model, X.head(5), run_id="0" * 32)
    tracker.close()
    runs.close()


def test_the_source_detector_answers_without_a_run(tmp_path, cancer, logistic):
    X, _ = cancer
    registry = Registry(
        SqlModelStore(f"sqlite:///{tmp_path / 'c.db'}"),
        open_artifact_store(str(tmp_path / "a")),
        source_detector=lambda: SourceVersion("abc123", None),
    )
    assert registry.register_model("m", logistic, X.head(5)).source.git_sha == "abc123"


def test_bad_arguments_name_the_rule(registry, cancer, logistic):
    X, _ = cancer
    model = logistic
    cases = [
        ({"name": "has space"}, "model name"),
        ({"metrics": {"auc": "high"}}, "metric 'auc'"),
        ({"data_digests": {"train": "abc"}}, r"data_digests\['train'\]"),
        ({"tags": {"": "x"}}, "tag key"),
        ({"input_example": "rows"}, "input_example"),
    ]
    for override, field in cases:
        args = {"name": "m", "model": model, "input_example": X.head(5)} | override
        with pytest.raises(ValidationError, match=field):
            registry.register_model(**args)
    assert registry.list_models() == []


def test_tags_and_descriptions(registry, cancer, logistic):
    X, _ = cancer
    registry.register_model("m", logistic, X.head(5))
    registry.set_model_tag("m", "owner", "ana")
    registry.set_version_tag("m", 1, "validated", True)
    registry.set_description("m", "predicts malignancy")
    registry.set_description("m", "first", version=1)
    registry.delete_model_tag("m", "owner")
    assert registry.get_model("m").description == "predicts malignancy"
    assert registry.get_model("m").tags == {}
    version = registry.get_version("m", 1)
    assert (dict(version.tags), version.description) == ({"validated": "True"}, "first")
    with pytest.raises(ValidationError, match="version"):
        registry.set_version_tag("m", 0, "k", "v")


# -- versions, aliases, audit ----------------------------------------------


@pytest.fixture
def three_versions(registry, cancer):
    X, y = cancer
    X = X.iloc[:, :4]
    for c in (0.01, 0.1, 1.0):
        registry.register_model("flights", LogisticRegression(C=c).fit(X, y), X[:5])
    return registry


def test_references_name_versions_aliases_and_latest(three_versions):
    reg = three_versions
    reg.set_alias("flights", "production", 2, reason="approved", actor="ana")
    assert reg.load_model("flights").version.version == 3
    assert reg.load_model("flights@latest").version.version == 3
    assert reg.load_model("flights/1").version.version == 1
    assert reg.load_model("flights@production").version.version == 2
    assert [v.version for v in reg.list_versions("flights")] == [1, 2, 3]
    assert reg.get_alias("flights", "production").version == 2


def test_alias_moves_are_audited_and_rolled_back(three_versions):
    reg = three_versions
    reg.set_alias("flights", "production", 1, reason="first release", actor="ana")
    moved = reg.set_alias("flights", "production", 3, reason="better auc")
    assert (moved.from_version, moved.to_version, moved.actor) == (1, 3, default_actor())
    back = reg.rollback("flights", "production", reason="v3 regressed on June", actor="bo")
    assert (back.action, back.from_version, back.to_version, back.actor) == (
        "rollback",
        3,
        1,
        "bo",
    )
    assert reg.get_alias("flights", "production").version == 1
    history = reg.history("flights")
    assert [(e.from_version, e.to_version) for e in history] == [(None, 1), (1, 3), (3, 1)]
    assert [e.reason for e in history] == ["first release", "better auc", "v3 regressed on June"]
    reg.delete_alias("flights", "production", reason="retired")
    assert reg.get_model("flights").aliases == {}


def test_alias_names_follow_the_rule(three_versions):
    for bad in ("Production", "1st", "latest", "a" * 64, "has space"):
        with pytest.raises(ValidationError, match="alias"):
            three_versions.set_alias("flights", bad, 1)
    three_versions.set_alias("flights", "canary-2_b", 1)


def test_unknown_names_list_what_exists(three_versions):
    reg = three_versions
    reg.set_alias("flights", "staging", 3)
    with pytest.raises(NotFoundError, match="no model named 'flight'; registered models: flights"):
        reg.load_model("flight")
    with pytest.raises(NotFoundError, match=r"'production'.*aliases: staging -> 3.*1 to 3"):
        reg.load_model("flights@production")
    with pytest.raises(NotFoundError, match="no version 9; its versions: 1 to 3"):
        reg.load_model("flights/9")
    with pytest.raises(ValidationError, match="a number from 1"):
        reg.load_model("flights/x")


def test_concurrent_registrations_from_threads(registry, cancer, logistic):
    X, _ = cancer
    model = logistic
    numbers, errors = [], []

    def register():
        try:
            numbers.append(registry.register_model("m", model, X.head(5)).version)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(numbers) == list(range(1, 51))


_REGISTER = textwrap.dedent(
    """
    import sys, time
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from conveyor.registry import Registry
    from conveyor.stores.backends import open_artifact_store
    from conveyor.stores.metadata.sql.models import SqlModelStore
    url, artifacts, start, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4]
    model = LogisticRegression().fit(X, y)
    registry = Registry(SqlModelStore(url), open_artifact_store(artifacts))
    while time.time() < start:
        time.sleep(0.001)
    for _ in range(count):
        print(registry.register_model("m", model, X.head(5)).version)
    """
)


@pytest.mark.slow
def test_fifty_registrations_from_eight_processes(metadata_url, tmp_path, cancer):
    SqlModelStore(metadata_url).close()
    start = time.time() + 8  # every interpreter imports scikit-learn first
    counts = [7, 7, 6, 6, 6, 6, 6, 6]
    args = [metadata_url, str(tmp_path / "artifacts"), str(start)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REGISTER, *args, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in counts
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results if err]
    numbers = sorted(int(n) for out, _ in results for n in out.split())
    assert numbers == list(range(1, 51))
    registry = Registry(
        SqlModelStore(metadata_url), open_artifact_store(str(tmp_path / "artifacts"))
    )
    X = cancer[0].iloc[:, :4]
    np.testing.assert_array_equal(
        registry.load_model("m/50").predict(X), registry.load_model("m/1").predict(X)
    )
    registry.models.close()


def test_importing_the_registry_is_light():
    code = (
        "import sys, conveyor.registry; "
        "heavy = {'pandas', 'sklearn', 'skops', 'lightgbm', 'xgboost', 'onnx', 'onnxruntime'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
