import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from conveyor.errors import StateError, UnsupportedModelError, ValidationError
from conveyor.registry.formats import (
    FORMATS,
    SkopsFormat,
    format_named,
    save_model,
    unsafe_types,
)


class ShrunkLogistic(LogisticRegression):
    """A user's own estimator class: skops would have to import and run this module."""


class Rule:
    """Not an estimator of any known library."""

    def predict(self, X):
        return (X.iloc[:, 0] > 15).to_numpy()


def _round_trip(model, trusted=False):
    fmt, saved = save_model(model, trusted)
    return fmt, saved, fmt.load(saved.files, saved.meta)


def test_lightgbm_classifier_keeps_classes_and_probabilities(cancer):
    X, y = cancer
    labels = np.where(y == 1, "benign", "malignant")
    model = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, labels)
    fmt, saved, loaded = _round_trip(model)
    assert (fmt.name, list(saved.files)) == ("lightgbm", ["model.txt"])
    assert saved.meta == {"kind": "classifier", "classes": ["benign", "malignant"]}
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_lightgbm_multiclass_and_regressor_and_booster(diabetes, cancer):
    X, y = diabetes
    regressor = lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(X, y)
    _, _, loaded = _round_trip(regressor)
    np.testing.assert_allclose(loaded.predict(X), regressor.predict(X))
    assert not hasattr(loaded, "predict_proba")
    bands = np.digitize(y, [100, 200])
    multi = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, bands)
    _, _, loaded = _round_trip(multi)
    np.testing.assert_allclose(loaded.predict_proba(X), multi.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), multi.predict(X))
    Xc, yc = cancer
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(Xc, yc), 10)
    _, saved, loaded = _round_trip(booster)
    assert saved.meta == {"kind": "booster"}
    np.testing.assert_allclose(loaded.predict(Xc), booster.predict(Xc))


def test_xgboost_wrappers_and_booster(cancer, diabetes):
    X, y = cancer
    clf = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
    fmt, saved, loaded = _round_trip(clf)
    assert (fmt.name, list(saved.files), saved.meta["class"]) == (
        "xgboost",
        ["model.ubj"],
        "XGBClassifier",
    )
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))
    Xd, yd = diabetes
    reg = xgb.XGBRegressor(n_estimators=10).fit(Xd, yd)
    np.testing.assert_allclose(_round_trip(reg)[2].predict(Xd), reg.predict(Xd))
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(Xd, yd), 5)
    _, saved, loaded = _round_trip(booster)
    assert saved.meta == {"kind": "booster"}
    np.testing.assert_allclose(loaded.predict(Xd), booster.predict(xgb.DMatrix(Xd)))


def test_onnx_classifier_and_regressor(cancer, diabetes):
    from skl2onnx import to_onnx

    X, y = cancer
    Xf = X.to_numpy(np.float32)
    clf = LogisticRegression(max_iter=5000).fit(Xf, y)
    fmt, saved, loaded = _round_trip(to_onnx(clf, Xf[:1], options={"zipmap": False}))
    assert (fmt.name, list(saved.files)) == ("onnx", ["model.onnx"])
    np.testing.assert_array_equal(loaded.predict(Xf), clf.predict(Xf))
    np.testing.assert_allclose(loaded.predict_proba(Xf), clf.predict_proba(Xf), atol=1e-5)
    zipped = _round_trip(to_onnx(clf, Xf[:1]))[2]  # probabilities as a list of dicts
    np.testing.assert_allclose(zipped.predict_proba(Xf), clf.predict_proba(Xf), atol=1e-5)
    Xd, yd = diabetes
    Xdf = Xd.to_numpy(np.float32)
    reg = LinearRegression().fit(Xdf, yd)
    loaded = _round_trip(to_onnx(reg, Xdf[:1]))[2]
    np.testing.assert_allclose(loaded.predict(Xd).ravel(), reg.predict(Xdf), rtol=1e-4)


def test_skops_records_the_types_it_trusts(cancer):
    X, y = cancer
    model = GradientBoostingClassifier(n_estimators=5).fit(X, y)
    fmt, saved, loaded = _round_trip(model)
    assert fmt.name == "skops"
    assert saved.meta == {"trusted_types": ["sklearn.tree._tree.Tree"]}
    assert {"skops", "scikit-learn", "numpy"} <= set(saved.packages)
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_skops_refuses_to_load_types_not_vetted_at_registration(cancer):
    X, y = cancer
    _, saved = save_model(GradientBoostingClassifier(n_estimators=2).fit(X, y), False)
    with pytest.raises(StateError, match=r"not vetted at registration: sklearn.tree._tree.Tree"):
        SkopsFormat().load(saved.files, {"trusted_types": []})


def test_a_custom_class_is_refused_with_the_safe_formats_and_what_trust_means(cancer):
    X, y = cancer
    model = ShrunkLogistic(max_iter=5000).fit(X, y)
    with pytest.raises(UnsupportedModelError) as info:
        save_model(model, trusted=False)
    message = str(info.value)
    assert "test_formats.ShrunkLogistic" in message
    for name in ("skops", "lightgbm", "xgboost", "onnx"):
        assert name in message
    assert "trusted=True" in message
    assert "runs code when the model is loaded" in message
    assert isinstance(info.value, ValidationError)
    assert info.value.field == "model"
    fmt, saved, loaded = _round_trip(model, trusted=True)
    assert (fmt.name, fmt.executes_code, list(saved.files)) == ("pickle", True, ["model.pkl"])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_an_object_of_no_known_library_needs_trust(cancer):
    X, _ = cancer
    with pytest.raises(UnsupportedModelError, match="no safe format accepts this type"):
        save_model(Rule(), trusted=False)
    fmt, _, loaded = _round_trip(Rule(), trusted=True)
    assert fmt.name == "pickle"
    np.testing.assert_array_equal(loaded.predict(X), Rule().predict(X))


def test_functions_that_run_code_are_not_safe_builtins(cancer):
    X, y = cancer
    with pytest.raises(UnsupportedModelError, match=r"builtins\.eval"):
        save_model(FunctionTransformer(func=eval).fit(X, y), trusted=False)
    np_ok = FunctionTransformer(func=np.log1p).fit(X, y)
    assert save_model(np_ok, trusted=False)[0].name == "skops"


def test_unsafe_types():
    assert unsafe_types(["numpy.float64", "scipy.sparse._csr.csr_matrix", "builtins.len"]) == []
    assert unsafe_types(["posix.system", "builtins.exec", "mylib.Model"]) == [
        "posix.system",
        "builtins.exec",
        "mylib.Model",
    ]


def test_formats_are_named_and_unknown_ones_refused():
    names = [f.name for f in FORMATS]
    assert names == ["pipeline", "lightgbm", "xgboost", "onnx", "skops", "pickle"]
    assert [f.name for f in FORMATS if f.executes_code] == ["pickle"]
    assert format_named("onnx").name == "onnx"
    with pytest.raises(StateError, match="unknown model format 'torch'"):
        format_named("torch")


@pytest.mark.parametrize("final", ["lightgbm", "xgboost"])
def test_a_pipeline_ending_in_a_native_model_is_stored_without_pickle(cancer, final):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    X, y = cancer
    frame = X.iloc[:, :5].copy()
    frame["kind"] = np.where(X.iloc[:, 0] > 14, "big", "small")
    frame.iloc[::7, 1] = np.nan
    transform = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), list(frame.columns[:5])),
            ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["kind"]),
        ]
    )
    model = (
        lgb.LGBMClassifier(n_estimators=20, verbose=-1)
        if final == "lightgbm"
        else xgb.XGBClassifier(n_estimators=20)
    )
    pipe = Pipeline([("transform", transform), ("model", model)]).fit(frame, y)
    fmt, saved, loaded = _round_trip(pipe)
    assert fmt.name == "pipeline"
    assert set(saved.files) >= {"transform.skops"}
    assert saved.meta["final"]["format"] == final
    assert not any(name.endswith(".pkl") for name in saved.files)
    np.testing.assert_array_equal(loaded.predict(frame), pipe.predict(frame))
    np.testing.assert_allclose(loaded.predict_proba(frame), pipe.predict_proba(frame), rtol=1e-6)
    unseen = pd.concat([frame.head(3).assign(kind="new")])
    np.testing.assert_allclose(loaded.predict_proba(unseen), pipe.predict_proba(unseen), rtol=1e-6)
