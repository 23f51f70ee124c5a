"""The lean path: numeric rows straight to an array, and a predictor verified on the example."""

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor.core.registry import ColumnSpec, Signature
from conveyor.serving.fastpath import Predictor, Rows, plan_for, rows_array

FLOATS = Signature("dataframe", (ColumnSpec("a", "float64"), ColumnSpec("b", "float64")))
INTS = Signature("dataframe", (ColumnSpec("a", "int64"), ColumnSpec("b", "int64")))
MIXED = Signature("dataframe", (ColumnSpec("a", "float64"), ColumnSpec("s", "object")))
TENSOR = Signature("tensor", dtype="float32", shape=(None, 2))


@pytest.fixture(scope="module")
def numeric():
    """20 float features and a binary label."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    y = (X["a"] + X["b"] * X["c"] > 0).astype(int)
    return X, y


def test_plans_only_for_all_numeric_signatures():
    assert plan_for(FLOATS).names == ("a", "b")
    assert plan_for(INTS).integer
    assert plan_for(TENSOR).width == 2
    assert plan_for(MIXED) is None
    assert plan_for(FLOATS) is plan_for(FLOATS)


def test_numeric_rows_become_one_array_in_signature_order():
    lean = rows_array([[1, 2.5], [3.0, 4]], FLOATS)
    assert isinstance(lean, Rows)
    assert lean.array.dtype == np.float64
    assert lean.array.tolist() == [[1.0, 2.5], [3.0, 4.0]]
    records = rows_array([{"b": 2.0, "a": 1.0, "extra": "x"}], FLOATS)
    assert records is not None
    assert records.array.tolist() == [[1.0, 2.0]]
    split = rows_array([[9.0, 2.0, 1.0]], FLOATS, ["b", "z", "a"])
    assert split is not None
    assert split.array.tolist() == [[1.0, 9.0]]
    assert list(split.frame().columns) == ["a", "b"]
    many = rows_array([[0, 1.0]] * 200, FLOATS)  # zeros and ones that are numbers
    assert many is not None
    assert many.array.shape == (200, 2)


@pytest.mark.parametrize(
    ("rows", "signature", "columns"),
    [
        ([[1.0, True]], FLOATS, None),  # a boolean: the checked path names the column
        ([[0.5, 2.0]] * 200 + [[1.0, True]], FLOATS, None),  # past the per-value check
        ([[1.0, None]], FLOATS, None),
        ([[1.0, "2"]], FLOATS, None),
        ([[1.0, 2.0], [1.0]], FLOATS, None),
        ([[1.0, 2.0, 3.0]], FLOATS, None),
        ([[1.0, 2.0], 3.0], FLOATS, None),
        ([{"a": 1.0}], FLOATS, None),
        ([[1.5, 2]], INTS, None),
        ([[2**70, 1]], INTS, None),
        ([[1.0, "a"]], MIXED, None),
        ([[1.0, 2.0]], FLOATS, ["a", "a"]),
        ([[1.0, 2.0]], FLOATS, ["a", "c"]),
        ([], FLOATS, None),
    ],
)
def test_anything_else_takes_the_checked_path(rows, signature, columns):
    assert rows_array(rows, signature, columns) is None


def test_bad_numeric_rows_are_refused_over_http_naming_the_column(registry, serve, numeric):
    from conveyor.serving import create_app

    X, y = numeric
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, y)
    registry.register_model("num", model, X.head(5))
    url = serve(create_app(registry, ["num/1"]))
    expected = model.predict(X.head(4)).tolist()
    answers = [
        requests.post(f"{url}/invocations", json={"inputs": X.head(4).values.tolist()}),
        requests.post(
            f"{url}/v1/models/num:predict", json={"instances": X.head(4).values.tolist()}
        ),
        requests.post(
            f"{url}/invocations",
            json={"dataframe_records": X.head(4).to_dict(orient="records")},
        ),
        requests.post(
            f"{url}/invocations",
            json={"dataframe_split": X.head(4)[["d", "c", "b", "a"]].to_dict(orient="split")},
        ),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected
    tensor = {"name": "x", "datatype": "FP64", "shape": [4, 4], "data": X.head(4).values.tolist()}
    v2 = requests.post(f"{url}/v2/models/num/infer", json={"inputs": [tensor]}).json()
    assert v2["outputs"][0]["data"] == expected
    proba = np.asarray(v2["outputs"][1]["data"]).reshape(4, 2)
    assert np.allclose(proba, model.predict_proba(X.head(4)), atol=1e-6)
    rows = X.head(1).values.tolist()
    rows[0][1] = True
    refused = requests.post(f"{url}/invocations", json={"inputs": rows})
    assert refused.status_code == 422
    assert refused.json()["field"] == "column 'b'"
    missing = requests.post(f"{url}/invocations", json={"dataframe_records": [{"a": 1.0}]})
    assert missing.status_code == 422
    assert "column 'b'" in missing.json()["field"]


def test_a_sklearn_model_is_served_through_onnx_with_the_native_answers(registry, numeric):
    X, y = numeric
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    registry.register_model("gbc", model, X.head(10))
    predictor = Predictor(registry.load_model("gbc/1"))
    assert predictor.mode == "onnx"
    assert predictor.inline
    pred, proba = predictor.predict([X.to_numpy()], True)
    assert pred.tolist() == model.predict(X).tolist()
    assert proba is not None
    assert np.allclose(proba, model.predict_proba(X), atol=1e-6)
    native = Predictor(registry.load_model("gbc/1"), onnx=False)
    assert native.mode == "array"
    assert native.predict([X.head(50)], False)[0].tolist() == model.predict(X.head(50)).tolist()


def test_an_onnx_export_that_differs_falls_back_to_the_native_model(registry, numeric, monkeypatch):
    from conveyor.serving import fastpath

    X, y = numeric
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, y)
    registry.register_model("gbc", model, X.head(20))
    other = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, 1 - y)
    wrong = fastpath._onnx_session(other, 4)  # a real export, of another model
    monkeypatch.setattr(fastpath, "_onnx_session", lambda raw, width: wrong)
    predictor = Predictor(registry.load_model("gbc/1"))
    assert predictor.mode == "array"
    assert predictor.predict([X.to_numpy()], False)[0].tolist() == model.predict(X).tolist()


def test_only_float32_tree_models_are_exported(registry, numeric):
    X, y = numeric
    registry.register_model("lin", LinearRegression().fit(X, y), X.head(10))
    predictor = Predictor(registry.load_model("lin/1"))
    assert predictor.mode == "array"
    assert predictor.inline


def test_a_model_that_needs_column_names_gets_a_frame(registry, numeric):
    X, y = numeric
    by_name = ColumnTransformer([("s", StandardScaler(), ["b", "a"])])
    model = make_pipeline(by_name, LinearRegression()).fit(X, y)
    registry.register_model("named", model, X.head(10))
    predictor = Predictor(registry.load_model("named/1"), onnx=False)
    assert predictor.mode == "frame"
    lean = rows_array(X.head(3).values.tolist(), registry.load_model("named/1").signature)
    assert lean is not None
    assert np.allclose(predictor.predict([lean.array], False)[0], model.predict(X.head(3)))
    # Rows that go to the model as a frame are not handed back as stacked rows.
    rows, pred, proba = predictor.predict_batch([X.head(3).to_numpy()], False)
    assert rows is None
    assert proba is None
    assert np.allclose(pred, model.predict(X.head(3)))


def test_a_batch_comes_back_with_its_rows_only_when_they_were_taken_as_they_came(registry, numeric):
    X, y = numeric
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, y)
    registry.register_model("rows", model, X.head(10))
    predictor = Predictor(registry.load_model("rows/1"))
    parts = [X.iloc[:2].to_numpy(), X.iloc[2:5].to_numpy()]
    rows, pred, proba = predictor.predict_batch(parts, True)
    assert rows is not None
    np.testing.assert_array_equal(rows, np.concatenate(parts))
    assert pred.tolist() == model.predict(X.head(5)).tolist()
    assert proba is not None
    assert proba.shape == (5, 2)
    alone = predictor.predict_batch(parts[:1], False)
    assert alone[0] is parts[0]
    assert alone[2] is None
    # Rows the model took only after a conversion (ints for float columns) are not
    # the rows it was given: no stacked rows, the answers as ever.
    ints = np.arange(8).reshape(2, 4)
    rows, pred, _ = predictor.predict_batch([ints], False)
    assert rows is None
    as_floats = pd.DataFrame(ints.astype(float), columns=X.columns)
    assert pred.tolist() == model.predict(as_floats).tolist()
