"""The serving app on a real server: protocols, validation, limits, batching, hot swap."""

from __future__ import annotations

import threading
import time

import pytest
import requests


def _expected(served, rows):
    return served.registry.load_model("cancer/1").predict(rows).tolist()


def _v2_body(rows):
    return {
        "id": "req-1",
        "inputs": [
            {
                "name": "mean radius",
                "datatype": "FP64",
                "shape": [len(rows)],
                "data": rows["mean radius"].tolist(),
            },
            {
                "name": "mean texture",
                "datatype": "FP64",
                "shape": [len(rows), 1],
                "data": [[v] for v in rows["mean texture"].tolist()],
            },
            {
                "name": "mean smoothness",
                "datatype": "FP32",
                "shape": [len(rows)],
                "data": rows["mean smoothness"].tolist(),
            },
            {
                "name": "size",
                "datatype": "BYTES",
                "shape": [len(rows)],
                "data": rows["size"].tolist(),
            },
        ],
    }


def test_v2_infer_with_typed_tensors_answers_predictions_and_probabilities(served, data):
    rows = data[0].iloc[100:110]
    r = requests.post(f"{served.url}/v2/models/cancer/infer", json=_v2_body(rows), timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["x-model-version"] == "cancer/1"
    body = r.json()
    assert body["id"] == "req-1"
    assert body["model_name"] == "cancer"
    assert body["model_version"] == "1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predict"]["data"] == _expected(served, rows)
    assert outputs["predict_proba"]["shape"] == [10, 2]


def test_v2_metadata_and_health(served):
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/cancer",
        "/v2/models/cancer/ready",
        "/ping",
        "/health",
        "/version",
        "/metrics",
    ):
        r = requests.get(served.url + path, timeout=10)
        assert r.status_code == 200, path
        assert r.headers["x-model-version"] == "cancer/1"
    inputs = requests.get(f"{served.url}/v2/models/cancer", timeout=10).json()["inputs"]
    assert [i["name"] for i in inputs][-1] == "size"


def test_v1_predict_takes_records(served, data):
    rows = data[0].iloc[:7]
    body = {"instances": rows.to_dict(orient="records")}
    r = requests.post(f"{served.url}/v1/models/cancer:predict", json=body, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == _expected(served, rows)


@pytest.mark.parametrize("kind", ["split", "records", "instances", "inputs", "csv"])
def test_mlflow_invocations_formats(served, data, kind):
    rows = data[0].iloc[200:215]
    if kind == "csv":
        r = requests.post(
            f"{served.url}/invocations",
            data=rows.to_csv(index=False),
            headers={"content-type": "text/csv"},
            timeout=10,
        )
    else:
        body = {
            "split": {"dataframe_split": rows.to_dict(orient="split")},
            "records": {"dataframe_records": rows.to_dict(orient="records")},
            "instances": {"instances": rows.values.tolist()},
            "inputs": {"inputs": rows.to_dict(orient="list")},
        }[kind]
        r = requests.post(f"{served.url}/invocations", json=body, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == _expected(served, rows)


def test_validation_errors_name_the_column(served, data):
    rows = data[0].iloc[:3]
    missing = rows.drop(columns=["mean texture"]).to_dict(orient="records")
    r = requests.post(
        f"{served.url}/v1/models/cancer:predict", json={"instances": missing}, timeout=10
    )
    assert r.status_code == 422
    assert "mean texture" in r.json()["field"]
    assert r.json()["rule"]
    wrong = rows.assign(**{"mean radius": ["a", "b", "c"]}).to_dict(orient="records")
    r = requests.post(f"{served.url}/invocations", json={"dataframe_records": wrong}, timeout=10)
    assert r.status_code == 422
    assert "mean radius" in r.json()["field"]
    body = _v2_body(rows)
    body["inputs"][0]["data"] = ["x", "y", "z"]
    r = requests.post(f"{served.url}/v2/models/cancer/infer", json=body, timeout=10)
    assert r.status_code == 422
    assert r.json()["field"] == "mean radius"


def test_unknown_model_is_404(served):
    r = requests.post(f"{served.url}/v2/models/nope/infer", json={"inputs": []}, timeout=10)
    assert r.status_code == 404
    assert r.json()["field"] == "model"
    assert requests.get(f"{served.url}/v2/models/nope", timeout=10).status_code == 404
    r = requests.post(f"{served.url}/v1/models/nope:predict", json={"instances": [{}]}, timeout=10)
    assert r.status_code == 404


def test_bad_json_and_nan_are_400(served):
    for text in (b"{not json", b'{"instances": [{"mean radius": NaN}]}', b"[Infinity]"):
        r = requests.post(
            f"{served.url}/v1/models/cancer:predict",
            data=text,
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert r.status_code == 400, text
        assert r.json()["rule"] == "valid JSON"


def test_oversized_bodies_are_413(served):
    big = b'{"instances": [' + b"1," * 100_000 + b"1]}"
    r = requests.post(
        f"{served.url}/invocations",
        data=big,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 413

    def chunks():
        for _ in range(200):
            yield b" " * 1000

    r = requests.post(
        f"{served.url}/invocations",
        data=chunks(),
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 413
    assert r.json()["field"] == "body"


def test_hostile_corpus_never_gets_a_5xx(served):
    url = served.url
    deep = b"[" * 5000 + b"]" * 5000
    cases = [
        ("/invocations", deep, "application/json"),
        ("/v1/models/cancer:predict", deep, "application/json"),
        ("/v2/models/cancer/infer", deep, "application/json"),
        ("/invocations", b"<xml/>", "application/xml"),
        ("/v2/models/cancer/infer", b"{}", "text/plain"),
        ("/invocations", b'{"instances": ["' + b"a" * 90_000 + b'"]}', "application/json"),
        ("/invocations", b"a,b\n1,2\n", "text/csv"),
        ("/invocations", b'"\xff\xfe"', "application/json"),
        (
            "/invocations",
            b'{"dataframe_split": {"columns": ["x"], "data": [[1, 2]]}}',
            "application/json",
        ),
        ("/invocations", b'{"inputs": {"a": [1], "b": [1, 2]}}', "application/json"),
        ("/invocations", b'{"instances": [1, 2], "inputs": []}', "application/json"),
        ("/invocations", b"null", "application/json"),
        ("/v1/models/cancer:explain", b"{}", "application/json"),
        (
            "/v2/models/cancer/infer",
            b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1]}]}',
            "application/json",
        ),
        (
            "/v2/models/cancer/infer",
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "WEIRD", "data": [1]}]}',
            "application/json",
        ),
        (
            "/v2/models/cancer/infer",
            b'{"inputs": [{"name": "x", "shape": [1, 1, 1], "datatype": "FP64", "data": [[[1]]]}]}',
            "application/json",
        ),
        (
            "/v2/models/cancer/infer",
            b'{"inputs": [{"name": "mean radius", "shape": [1], '
            b'"datatype": "INT64", "data": [1e400]}]}',
            "application/json",
        ),
    ]
    for path, body, kind in cases:
        r = requests.post(url + path, data=body, headers={"content-type": kind}, timeout=10)
        assert 400 <= r.status_code < 500, (path, body[:60], r.status_code, r.text)
        assert "error" in r.json()
    r = requests.post(
        f"{url}/invocations",
        data=b"{}",
        timeout=10,
        headers={"content-type": "application/json", "content-length": "abc"},
    )
    assert 400 <= r.status_code < 500


def test_concurrent_requests_are_batched_and_answered_correctly(served, data):
    X = data[0]
    expected = served.registry.load_model("cancer/1").predict(X).tolist()
    failures: list[str] = []
    n_threads, per_thread = 16, 10

    def client(k: int) -> None:
        with requests.Session() as session:
            for j in range(per_thread):
                i = (k * per_thread + j) % len(X)
                body = {"dataframe_records": X.iloc[[i]].to_dict(orient="records")}
                r = session.post(f"{served.url}/invocations", json=body, timeout=30)
                if r.status_code != 200 or r.json()["predictions"] != [expected[i]]:
                    failures.append(r.text)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    batches = sum(
        int(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('conveyor_batch_size_count{model="cancer"}')
    )
    assert 0 < batches < n_threads * per_thread
    assert (
        'conveyor_requests_total{model="cancer",version="1",protocol="mlflow",status="200"}'
        in metrics
    )
    assert "conveyor_queue_depth" in metrics
    assert "conveyor_model_load_seconds_count" in metrics


def test_hot_swaps_and_rollbacks_under_load_fail_no_request(registry, data, serve, make_model):
    """22 alias moves (forward, rollback, forward...) under 3 clients: 0 failed requests."""
    from conveyor.serving import create_app

    X, _ = data
    registry.register_model("cancer", make_model(data), X.head(20))
    registry.register_model("cancer", make_model(data, c=0.01), X.head(20))
    registry.set_alias("cancer", "production", 1)
    app = create_app(registry, ["cancer@production"], poll_seconds=0.03)
    url = serve(app)
    body = {"dataframe_records": X.iloc[:5].to_dict(orient="records")}
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                r = session.post(f"{url}/invocations", json=body, timeout=30)
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    seen.append(r.headers["x-model-version"])

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    swaps = 0
    try:
        for i in range(22):
            want = "cancer/2" if i % 2 == 0 else "cancer/1"
            if i % 2 == 0:
                registry.set_alias("cancer", "production", 2)
            else:
                registry.rollback("cancer", "production")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (not seen or seen[-1] != want):
                time.sleep(0.01)
            swaps += seen[-1] == want
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures
    assert swaps == 22
    assert len(seen) > 22


# -- request ids, capture, feedback --------------------------------------------


def test_every_answer_carries_a_request_id_and_the_version(served, data):
    rows = data[0].iloc[:2]
    body = {"dataframe_records": rows.to_dict(orient="records")}
    url = served.url
    r = requests.post(f"{url}/invocations", json=body, headers={"X-Request-ID": "abc.1:2-3_4"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "abc.1:2-3_4"
    assert r.headers["x-model-version"] == "cancer/1"
    r = requests.post(f"{url}/invocations", json=body)
    generated = r.headers["x-request-id"]
    assert len(generated) == 32
    assert int(generated, 16) >= 0
    assert requests.post(f"{url}/invocations", json=body).headers["x-request-id"] != generated
    r = requests.post(f"{url}/v2/models/cancer/infer", json=_v2_body(rows))
    assert r.headers["x-request-id"] == "req-1"
    assert r.json()["id"] == "req-1"
    assert r.json()["model_version"] == "1"
    nameless = {k: v for k, v in _v2_body(rows).items() if k != "id"}
    r = requests.post(f"{url}/v2/models/cancer/infer", json=nameless)
    assert r.json()["id"] == r.headers["x-request-id"]
    for bad in ("x" * 129, "has space", "semi;colon"):
        r = requests.post(f"{url}/invocations", json=body, headers={"X-Request-ID": bad})
        assert r.status_code == 400
        assert r.json()["field"] == "X-Request-ID"
        assert len(r.headers["x-request-id"]) == 32
    r = requests.post(f"{url}/v2/models/cancer/infer", json={**_v2_body(rows), "id": "a b"})
    assert r.status_code == 400
    assert r.json()["field"] == "id"
    for path in ("/ping", "/v2/health/ready", "/metrics", "/openapi.json"):
        assert "x-request-id" in requests.get(url + path).headers


def _run_until_stopped(app):
    """Start ``app`` on uvicorn; returns its URL and a function that stops it (lifespan end)."""
    import socket

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(20)

    return f"http://127.0.0.1:{port}", stop


def test_capture_records_answers_and_flushes_on_shutdown(registry, data, make_model):
    from conveyor.serving import create_app
    from conveyor.serving.capture import CaptureWriter
    from conveyor.stores.capture import join_feedback, read_capture, read_feedback

    X, _ = data
    registry.register_model("cancer", make_model(data), X.head(20))
    store = registry.artifacts.byte_store
    writer = CaptureWriter(store, window_s=60)
    app = create_app(registry, ["cancer/1"], capture=writer)
    url, stop = _run_until_stopped(app)
    try:
        rows = X.iloc[10:13]
        r = requests.post(
            f"{url}/invocations",
            json={"dataframe_split": rows.to_dict(orient="split")},
            headers={"X-Request-ID": "mlflow-1"},
        )
        assert r.status_code == 200
        r = requests.post(f"{url}/v2/models/cancer/infer", json=_v2_body(X.iloc[20:21]))
        assert r.status_code == 200
        bad = rows.drop(columns=["size"]).to_dict(orient="records")
        r = requests.post(
            f"{url}/v1/models/cancer:predict",
            json={"instances": bad},
            headers={"X-Request-ID": "bad-1"},
        )
        assert r.status_code == 422
        fb = {
            "request_ids": ["mlflow-1", "mlflow-1", "req-1"],
            "labels": [1, 0, 1],
            "rows": [0, 2, 0],
        }
        r = requests.post(f"{url}/v2/models/cancer/feedback", json=fb)
        assert r.status_code == 200, r.text
        assert r.json()["labels"] == 3
        assert read_capture(store, "cancer").num_rows == 0  # still buffered: a 60 s window
        metrics = requests.get(f"{url}/metrics").text
        assert "conveyor_capture_rows_total 5" in metrics
        assert "conveyor_capture_dropped_rows_total 0" in metrics
    finally:
        stop()
    table = read_capture(store, "cancer")
    by_id = {}
    for row in table.to_pylist():
        by_id.setdefault(row["request_id"], []).append(row)
    assert [r["row"] for r in by_id["mlflow-1"]] == [0, 1, 2]
    assert [r["in.mean radius"] for r in by_id["mlflow-1"]] == rows["mean radius"].tolist()
    expected = registry.load_model("cancer/1").predict(rows).tolist()
    assert [r["out.prediction"] for r in by_id["mlflow-1"]] == expected
    assert all(0 <= r["out.probability"] <= 1 for r in by_id["mlflow-1"])
    assert {r["route"] for r in table.to_pylist()} == {"primary"}
    assert by_id["req-1"][0]["status"] == 200
    assert by_id["bad-1"][0]["status"] == 422
    assert by_id["bad-1"][0]["in.mean radius"] is None
    assert all(r["version"] == 1 and r["latency_ms"] > 0 for r in table.to_pylist())
    joined = join_feedback(table, read_feedback(store, "cancer")).to_pylist()
    labels = {(r["request_id"], r["row"]): r["label"] for r in joined}
    assert labels[("mlflow-1", 0)] == 1
    assert labels[("mlflow-1", 1)] is None
    assert labels[("mlflow-1", 2)] == 0
    assert labels[("req-1", 0)] == 1


def test_concurrent_requests_batched_together_are_captured_each_with_its_own_rows(registry):
    import asyncio

    import aiohttp
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from conveyor.serving import create_app
    from conveyor.serving.capture import CaptureWriter
    from conveyor.stores.capture import read_capture

    rng = np.random.default_rng(11)
    X = pd.DataFrame(rng.normal(size=(400, 4)), columns=["a", "b", "c", "d"])
    model = LogisticRegression().fit(X, (X["a"] + X["b"] > 0).astype(int))
    registry.register_model("lean", model, X.head(10))
    store = registry.artifacts.byte_store
    app = create_app(registry, ["lean/1"], capture=CaptureWriter(store), batch_wait_ms=5.0)
    url, stop = _run_until_stopped(app)
    spans = [(i * 3, 1 + i % 3) for i in range(96)]

    async def post_all() -> set[int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as client:

            async def post(start: int, rows: int) -> int:
                body = {"dataframe_split": X.iloc[start : start + rows].to_dict(orient="split")}
                headers = {"X-Request-ID": f"q{start}"}
                async with client.post(f"{url}/invocations", json=body, headers=headers) as r:
                    return r.status

            return set(await asyncio.gather(*(post(*span) for span in spans)))

    try:
        assert asyncio.run(post_all()) == {200}
        batches = requests.get(f"{url}/metrics").text
    finally:
        stop()
    # Requests did share batches (fewer batches than requests) ...
    count = next(
        line for line in batches.splitlines() if line.startswith("conveyor_batch_size_count")
    )
    assert float(count.rsplit(" ", 1)[1]) < len(spans)
    # ... and each is in the log with its own rows, predictions and probabilities.
    by_id: dict[str, list[dict]] = {}
    for row in read_capture(store, "lean").to_pylist():
        by_id.setdefault(row["request_id"], []).append(row)
    assert len(by_id) == len(spans)
    for start, rows in spans:
        got = sorted(by_id[f"q{start}"], key=lambda r: r["row"])
        sent = X.iloc[start : start + rows]
        assert [[r[f"in.{c}"] for c in "abcd"] for r in got] == sent.values.tolist()
        assert [r["out.prediction"] for r in got] == model.predict(sent).tolist()
        proba = model.predict_proba(sent)[:, 1]
        assert np.allclose([r["out.probability"] for r in got], proba, atol=1e-6)


def test_the_heap_loaded_at_start_is_frozen_until_the_app_stops(registry, data, make_model):
    import gc

    from conveyor.serving import create_app

    X, _ = data
    registry.register_model("cancer", make_model(data), X.head(20))
    gc.unfreeze()
    for freeze in (True, False):
        app = create_app(registry, ["cancer/1"], freeze_heap=freeze)
        url, stop = _run_until_stopped(app)
        try:
            assert requests.get(f"{url}/ping").status_code == 200
            frozen = gc.get_freeze_count()
        finally:
            stop()
        # Frozen: the libraries and the model, tens of thousands of objects.
        assert (frozen > 10_000) is freeze, frozen
        assert gc.get_freeze_count() == 0  # given back when the app stopped


def test_feedback_bad_bodies_name_the_field(served):
    url = f"{served.url}/v2/models/cancer/feedback"
    cases = [
        ({"labels": [1]}, 422, "request_ids"),
        ({"request_ids": [], "labels": []}, 422, "request_ids"),
        ({"request_ids": ["a", "b"], "labels": [1]}, 422, "labels"),
        ({"request_ids": ["a"], "labels": [None]}, 422, "labels"),
        ({"request_ids": ["a"], "labels": [[1]]}, 422, "labels"),
        ({"request_ids": ["a b"], "labels": [1]}, 422, "request_ids"),
        ({"request_ids": [1], "labels": [1]}, 422, "request_ids"),
        ({"request_ids": ["a"], "labels": [1], "rows": [-1]}, 422, "rows"),
        ({"request_ids": ["a"], "labels": [1], "rows": [True]}, 422, "rows"),
        ({"request_ids": ["a"], "labels": [1], "rows": [0, 1]}, 422, "rows"),
        ({"request_ids": ["a", "b"], "labels": [1, "x"]}, 422, "label"),
        ({"request_ids": ["a"], "labels": [1], "extra": 1}, 422, "extra"),
        ([1, 2], 400, "body"),
    ]
    for body, status, field in cases:
        r = requests.post(url, json=body, timeout=10)
        assert r.status_code == status, (body, r.text)
        assert r.json()["field"] == field, (body, r.text)
    r = requests.post(url, data=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = requests.post(url, data=b"a,b", headers={"content-type": "text/csv"})
    assert r.status_code == 415
    r = requests.post(
        f"{served.url}/v2/models/nope/feedback", json={"request_ids": ["a"], "labels": [1]}
    )
    assert r.status_code == 404
