"""Bodies of each protocol turned into frames, and refused with the field and rule."""

import pandas as pd
import pytest

from conveyor.core.registry import ColumnSpec, Signature
from conveyor.serving.errors import HTTPProblem
from conveyor.serving.protocols import (
    frame_from_mlflow,
    frame_from_v1,
    frame_from_v2,
    parse_json,
)

SIG = Signature("dataframe", (ColumnSpec("x", "float64"), ColumnSpec("s", "object")))
NULLABLE = Signature("dataframe", (ColumnSpec("x", "float64", nullable=True),))


def test_v2_columns_and_a_2d_tensor():
    body = {
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [2, 1], "data": [[1.0], [2.5]]},
            {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
        ]
    }
    frame = frame_from_v2(body, SIG)
    assert frame["x"].tolist() == [1.0, 2.5]
    assert frame["s"].tolist() == ["a", "b"]
    two_d = {"inputs": [{"name": "in", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}]}
    assert list(frame_from_v2(two_d, SIG).columns) == ["x", "s"]


@pytest.mark.parametrize(
    ("tensor", "status"),
    [
        ({"name": "x", "datatype": "INT64", "shape": [1], "data": [1.5]}, 422),
        ({"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}, 422),
        ({"name": "s", "datatype": "BYTES", "shape": [1], "data": [3]}, 422),
        ({"name": "x", "datatype": "FP64", "shape": [3], "data": [1.0]}, 400),
        ({"name": "x", "datatype": "FP64", "shape": "3", "data": [1.0]}, 400),
        ({"datatype": "FP64", "shape": [1], "data": [1.0]}, 400),
    ],
)
def test_v2_bad_tensors(tensor, status):
    with pytest.raises(HTTPProblem) as info:
        frame_from_v2({"inputs": [tensor]}, SIG)
    assert info.value.status == status


def test_v1_and_mlflow_shapes():
    records = [{"x": 1.0, "s": "a"}]
    assert frame_from_v1({"instances": records}, SIG).equals(pd.DataFrame(records))
    rows = frame_from_mlflow({"instances": [[1.0, "a"]]}, SIG)
    assert list(rows.columns) == ["x", "s"]
    split = {"dataframe_split": {"columns": ["x", "s"], "data": [[1.0, "a"]]}}
    assert frame_from_mlflow(split, SIG)["s"].tolist() == ["a"]
    with pytest.raises(HTTPProblem):
        frame_from_mlflow({"instances": [[1.0]]}, SIG)
    with pytest.raises(HTTPProblem):
        frame_from_v1({"rows": []}, SIG)


def test_ragged_split_rows_are_a_400_naming_the_row():
    """Found by schemathesis: pandas pads ragged rows (a warning, soon an error): a 500."""
    ragged = {"dataframe_split": {"columns": ["x", "s"], "data": [[1.0, "a"], [[], 2.0, 3]]}}
    with pytest.raises(HTTPProblem) as info:
        frame_from_mlflow(ragged, SIG)
    assert info.value.status == 400
    assert "row 1 must be a list of 2 values" in str(info.value)
    no_columns = {"dataframe_split": {"columns": [], "data": [[[], 1], [2]]}}
    with pytest.raises(HTTPProblem) as info:
        frame_from_mlflow(no_columns, SIG)
    assert info.value.status == 400


def test_nan_only_where_the_signature_allows_nulls():
    with pytest.raises(HTTPProblem) as info:
        parse_json(b'{"x": NaN}', SIG)
    assert info.value.status == 400
    assert parse_json(b'{"x": NaN}', NULLABLE)["x"] != 0


def test_rows_for_a_model_registered_from_an_array(registry, serve):
    import requests
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    from conveyor.serving import create_app

    X, y = load_breast_cancer(return_X_y=True)
    model = LogisticRegression(max_iter=5000).fit(X, y)
    registry.register_model("arrays", model, X[:5])
    url = serve(create_app(registry, ["arrays/1"]))
    body = {"inputs": X[:3].tolist()}
    answer = requests.post(f"{url}/invocations", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == model.predict(X[:3]).tolist()
    wrong = requests.post(f"{url}/invocations", json={"inputs": [[1.0, 2.0]]}, timeout=10)
    assert wrong.status_code == 422
    assert "shape" in wrong.json()["error"]
