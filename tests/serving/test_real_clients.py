"""Real clients: tritonclient's HTTP client on Open Inference V2, MLflow's documented bodies."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import requests


@pytest.fixture
def mixed(registry, serve):
    """``mixed`` (INT64, FP32 and string columns) and ``cancer`` served side by side."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from conveyor.serving import create_app

    rng = np.random.default_rng(0)
    n = 300
    X = pd.DataFrame(
        {
            "count": rng.integers(0, 50, n).astype(np.int64),
            "ratio": rng.random(n).astype(np.float32),
            "kind": rng.choice(["a", "b", "c"], n).astype(object),
        }
    )
    y = (X["count"] > 25) ^ (X["kind"] == "a")
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["count", "ratio"]), ("cat", OneHotEncoder(), ["kind"])]
    )
    model = make_pipeline(pre, LogisticRegression()).fit(X, y)
    registry.register_model("mixed", model, X.head(20))
    registry.set_alias("mixed", "production", 1)
    app = create_app(registry, ["mixed@production"])
    return serve(app), model, X


def test_tritonclient_metadata_ready_and_typed_infer(mixed):
    import tritonclient.http as httpclient

    url, model, X = mixed
    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("mixed")
        meta = client.get_model_metadata("mixed")
        assert meta["name"] == "mixed"
        assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
            "count": "INT64",
            "ratio": "FP32",
            "kind": "BYTES",
        }
        assert client.get_server_metadata()["name"] == "conveyor"
        rows = X.iloc[:7]
        inputs = []
        for name, datatype, values in (
            ("count", "INT64", rows["count"].to_numpy()),
            ("ratio", "FP32", rows["ratio"].to_numpy()),
            ("kind", "BYTES", rows["kind"].to_numpy().astype(object)),
        ):
            tensor = httpclient.InferInput(name, [len(rows)], datatype)
            tensor.set_data_from_numpy(values, binary_data=False)
            inputs.append(tensor)
        outputs = [httpclient.InferRequestedOutput("predict", binary_data=False)]
        result = client.infer("mixed", inputs, outputs=outputs, request_id="triton-7")
        assert result.as_numpy("predict").tolist() == model.predict(rows).tolist()
        response = result.get_response()
        assert response["id"] == "triton-7"
        assert response["model_version"] == "1"
        assert [o["name"] for o in response["outputs"]] == ["predict"]
        both = client.infer("mixed", inputs)
        assert both.as_numpy("predict_proba").shape == (7, 2)
        from tritonclient.utils import InferenceServerException

        bad = httpclient.InferInput("count", [2], "INT64")
        bad.set_data_from_numpy(np.array([1, 2], dtype=np.int64), binary_data=False)
        with pytest.raises(InferenceServerException, match="ratio"):
            client.infer("mixed", [bad])
    finally:
        client.close()


def _post(url: str, body: object | None = None, **kwargs) -> requests.Response:
    return requests.post(f"{url}/invocations", json=body, timeout=10, **kwargs)


def test_mlflow_documented_request_shapes(mixed):
    """The bodies of MLflow's 'Deploy MLflow Model as a Local Inference Server' page."""
    url, model, X = mixed
    rows = X.iloc[:4]
    expected = model.predict(rows).tolist()
    records = rows.to_dict(orient="records")
    columns = list(rows.columns)
    bodies = [
        {"dataframe_split": {"columns": columns, "data": rows.values.tolist()}},
        {"dataframe_split": rows.to_dict(orient="split")},  # with "index", as pandas writes it
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": {c: rows[c].tolist() for c in columns}},
        {"dataframe_split": {"columns": columns, "data": rows.values.tolist()}, "params": {}},
    ]
    for body in bodies:
        r = _post(url, body)
        assert r.status_code == 200, (body, r.text)
        assert r.json() == {"predictions": expected}
    csv = rows.to_csv(index=False)
    for kind in ("text/csv", "text/csv; charset=utf-8"):
        r = requests.post(
            f"{url}/invocations", data=csv, headers={"Content-Type": kind}, timeout=10
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": expected}
    r = requests.post(
        f"{url}/invocations",
        data=json.dumps({"dataframe_records": records}),
        headers={"Content-Type": "application/json; format=pandas-records"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert requests.get(f"{url}/ping", timeout=10).status_code == 200
    assert requests.get(f"{url}/health", timeout=10).status_code == 200
    assert requests.get(f"{url}/version", timeout=10).text
