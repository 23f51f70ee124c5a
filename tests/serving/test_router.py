"""Traffic policies on a real server: canary shares (sticky), shadow copies, held-back policies."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest
import requests

from conveyor.core.loop import Traffic
from conveyor.serving import create_app
from conveyor.serving.capture import CaptureWriter
from conveyor.stores.backends import open_loop_store
from conveyor.stores.capture import read_capture


class ZeroModel:
    """A model only pickle holds (registered trusted, then its trust flag is withdrawn)."""

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)


@pytest.fixture
def loop(tmp_path):
    store = open_loop_store(f"sqlite:///{tmp_path / 'conveyor.db'}")
    yield store
    store.close()


@pytest.fixture
def two_versions(registry, data, make_model):
    X, _ = data
    registry.register_model("cancer", make_model(data), X.head(20))
    registry.register_model("cancer", make_model(data, c=0.001), X.head(20))
    registry.set_alias("cancer", "production", 1)
    return registry


def _wait_metric(url: str, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        if text in metrics or time.monotonic() > deadline:
            return metrics
        time.sleep(0.05)


def _body(data, i: int) -> dict:
    return {"dataframe_records": data[0].iloc[[i]].to_dict(orient="records")}


def test_canary_takes_its_share_sticky_by_the_key_header(two_versions, loop, data, serve):
    app = create_app(
        two_versions, ["cancer@production"], loop_store=loop, traffic_poll_seconds=0.05
    )
    url = serve(app)
    assert (
        requests.post(f"{url}/invocations", json=_body(data, 0)).headers["x-model-version"]
        == "cancer/1"
    )
    loop.set_traffic(
        Traffic("cancer", "production", canary_version=2, canary_share=0.5, sticky_key="x-user")
    )
    metrics = _wait_metric(url, 'conveyor_traffic_policy{model="cancer",canary="2",shadow=""} 0.5')
    assert 'canary="2"' in metrics
    versions: dict[str, set[str]] = {}
    with requests.Session() as session:
        for i in range(120):
            user = f"user-{i % 40}"
            r = session.post(f"{url}/invocations", json=_body(data, i), headers={"x-user": user})
            assert r.status_code == 200
            versions.setdefault(user, set()).add(r.headers["x-model-version"])
    assert all(len(v) == 1 for v in versions.values())  # sticky
    canary_users = sum(v == {"cancer/2"} for v in versions.values())
    assert 8 <= canary_users <= 32
    metrics = requests.get(f"{url}/metrics").text
    assert 'conveyor_route_requests_total{model="cancer",route="canary",version="2"' in metrics
    assert 'conveyor_route_requests_total{model="cancer",route="primary",version="1"' in metrics
    # Without the key, each request is drawn: both sides answer.
    seen = {
        requests.post(f"{url}/invocations", json=_body(data, 1)).headers["x-model-version"]
        for _ in range(40)
    }
    assert seen == {"cancer/1", "cancer/2"}
    loop.set_traffic(Traffic("cancer", "production"))
    _wait_metric(url, 'conveyor_traffic_policy{model="cancer",canary="",shadow=""} 0')
    seen = {
        requests.post(f"{url}/invocations", json=_body(data, 1)).headers["x-model-version"]
        for _ in range(20)
    }
    assert seen == {"cancer/1"}


def test_shadow_answers_are_captured_never_returned(two_versions, loop, data, serve):
    writer = CaptureWriter(two_versions.artifacts.byte_store, window_s=60)
    loop.set_traffic(Traffic("cancer", "production", shadow_version=2))
    app = create_app(
        two_versions,
        ["cancer@production"],
        loop_store=loop,
        traffic_poll_seconds=0.05,
        capture=writer,
    )
    url = serve(app)  # the policy is read before the server answers
    X = data[0]
    expected = two_versions.load_model("cancer/1").predict(X.iloc[:30]).tolist()
    for i in range(30):
        r = requests.post(
            f"{url}/invocations", json=_body(data, i), headers={"X-Request-ID": f"r{i}"}
        )
        assert r.status_code == 200
        assert r.headers["x-model-version"] == "cancer/1"
        assert r.json()["predictions"] == [expected[i]]
    _wait_metric(url, 'route="shadow",version="2",status="200"} 30')
    writer.flush()
    table = read_capture(two_versions.artifacts.byte_store, "cancer")
    shadow = read_capture(two_versions.artifacts.byte_store, "cancer", route="shadow")
    primary = read_capture(two_versions.artifacts.byte_store, "cancer", route="primary")
    assert table.num_rows == 60
    assert set(shadow.column("version").to_pylist()) == {2}
    assert set(primary.column("version").to_pylist()) == {1}
    assert sorted(shadow.column("request_id").to_pylist()) == sorted(f"r{i}" for i in range(30))
    v2 = two_versions.load_model("cancer/2").predict(X.iloc[:30]).tolist()
    by_id = {r["request_id"]: r["out.prediction"] for r in shadow.to_pylist()}
    assert [by_id[f"r{i}"] for i in range(30)] == v2


def test_a_canary_that_cannot_load_keeps_all_traffic_on_the_primary(
    two_versions, loop, data, serve, tmp_path
):
    X, _ = data
    two_versions.register_model("cancer", ZeroModel(), X.head(20), trusted=True)
    with sqlite3.connect(tmp_path / "conveyor.db") as conn:
        conn.execute("UPDATE model_versions SET trusted = 0 WHERE version = 3")
    app = create_app(
        two_versions, ["cancer@production"], loop_store=loop, traffic_poll_seconds=0.05
    )
    url = serve(app)
    loop.set_traffic(Traffic("cancer", "production", canary_version=3, canary_share=1.0))
    metrics = _wait_metric(url, "conveyor_traffic_policy_error{")
    error = next(x for x in metrics.splitlines() if x.startswith("conveyor_traffic_policy_error{"))
    assert 'version="3"' in error
    assert "trusted" in error
    for i in range(10):
        r = requests.post(f"{url}/invocations", json=_body(data, i))
        assert r.status_code == 200
        assert r.headers["x-model-version"] == "cancer/1"
