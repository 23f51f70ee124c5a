import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from conveyor.errors import ValidationError
from conveyor.lifecycle import FeatureTransform, make_feature_transform, make_model_pipeline
from conveyor.lifecycle.transform import UNKNOWN, feature_kinds


def train_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.0, 2.0, np.nan, 4.0, 100.0],
            "n": [1, 2, 3, 4, 5],
            "ok": [True, False, True, False, True],
            "city": ["oslo", "rome", None, "oslo", "rome"],
            "size": pd.Categorical(["s", "m", "m", "l", "s"]),
        }
    )


def test_feature_kinds_follow_dtypes():
    assert feature_kinds(train_frame(), ["x", "n", "ok", "city", "size"]) == (
        ["x", "n", "ok"],
        ["city", "size"],
    )
    frame = train_frame().assign(when=pd.Timestamp("2020-01-01"))
    with pytest.raises(ValidationError, match="'when' is a datetime"):
        feature_kinds(frame, ["when"])
    with pytest.raises(ValidationError, match="'nope' is not a column"):
        feature_kinds(frame, ["nope"])


def test_numbers_are_imputed_with_the_training_median():
    transform = make_feature_transform(["x"], []).fit(train_frame())
    test = pd.DataFrame({"x": [np.nan, 1000.0]})
    assert transform.transform(test)[:, 0].tolist() == [3.0, 1000.0]  # median of 1, 2, 4, 100


def test_scaling_uses_training_statistics():
    transform = make_feature_transform(["n"], [], scale=True).fit(train_frame())
    out = transform.transform(pd.DataFrame({"n": [3, 5]}))[:, 0]
    assert out[0] == pytest.approx(0.0)
    assert out[1] == pytest.approx(2 / np.std([1, 2, 3, 4, 5]))


def test_a_category_seen_only_in_test_is_unknown():
    transform = make_feature_transform([], ["city", "size"]).fit(train_frame())
    test = pd.DataFrame({"city": ["rome", "paris", None], "size": pd.Categorical(["xl", "s", "m"])})
    codes = transform.transform(test)
    assert codes[:, 0].tolist() == [1.0, UNKNOWN, UNKNOWN]  # oslo 0, rome 1
    assert codes[1, 1] != UNKNOWN
    assert codes[0, 1] == UNKNOWN


def test_onehot_gives_no_column_to_an_unseen_category():
    transform = make_feature_transform([], ["city"], encoding="onehot").fit(train_frame())
    names = list(transform.get_feature_names_out())
    assert names[:2] == ["city_oslo", "city_rome"]
    row = transform.transform(pd.DataFrame({"city": ["paris"]}))[0]
    assert row.tolist() == [0.0] * len(names)


def test_the_transform_is_scikit_learns_own_class():
    transform = make_feature_transform(["x"], ["city"])
    assert type(transform) is ColumnTransformer is FeatureTransform


def test_a_fitted_transform_round_trips_through_skops():
    frame = train_frame()
    transform = make_feature_transform(["x", "n", "ok"], ["city", "size"], scale=True)
    transform.fit(frame)
    data = sio.dumps(transform)
    untrusted = sio.get_untrusted_types(data=data)
    assert all(t.startswith(("sklearn.", "numpy.")) for t in untrusted)
    back = sio.loads(data, trusted=untrusted)
    np.testing.assert_array_equal(back.transform(frame), transform.transform(frame))


def test_the_model_pipeline_carries_the_transform_to_serving():
    frame = train_frame()
    y = [0, 1, 0, 1, 1]
    model = make_model_pipeline(make_feature_transform(["x", "n"], ["city"]), LogisticRegression())
    assert isinstance(model, Pipeline)
    assert list(model.named_steps) == ["transform", "model"]
    model.fit(frame, y)
    data = sio.dumps(model)
    served = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    raw = pd.DataFrame({"x": [np.nan], "n": [9], "city": ["paris"], "extra": ["ignored"]})
    np.testing.assert_array_equal(served.predict_proba(raw), model.predict_proba(raw))


def test_transformed_features_are_what_the_estimator_sees():
    from conveyor.lifecycle import transformed_features

    frame = train_frame()
    model = make_model_pipeline(make_feature_transform(["x", "n"], ["city"]), LogisticRegression())
    model.fit(frame, [0, 1, 0, 1, 1])
    seen = transformed_features(model, frame)
    assert seen is not None
    assert len(seen) == len(frame)
    assert not seen.isna().any().any()  # imputed: what the estimator gets has no gaps
    np.testing.assert_allclose(seen.to_numpy(), model[:-1].transform(frame))
    assert any("city" in c for c in seen.columns)  # named by the transform
    assert transformed_features(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), frame) is None


def test_bad_arguments_are_named():
    with pytest.raises(ValidationError, match="no features"):
        make_feature_transform([], [])
    with pytest.raises(ValidationError) as info:
        make_feature_transform(["x"], [], encoding="hash")
    assert info.value.field == "encoding"
