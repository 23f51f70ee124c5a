"""``conveyor serve`` in a real process, answering on 127.0.0.1."""

import os
import socket
import subprocess
import sys
import time

import pytest
import requests
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store, open_model_store

# The command is wired here as cli/app.py will wire it.
_MAIN = (
    "import sys\n"
    "from conveyor.cli import app\n"
    "from conveyor.cli.serve import serve\n"
    "if 'serve' not in {c.name for c in app.app.registered_commands}:\n"
    "    app.app.command('serve')(serve)\n"
    "sys.argv[0] = 'conveyor'\n"
    "app.main()\n"
)


@pytest.fixture
def model_project(project):
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4]
    state = project.root / ".conveyor"
    store = open_model_store(f"sqlite:///{state / 'conveyor.db'}")
    registry = Registry(store, open_artifact_store(str(state / "artifacts")))
    model = LogisticRegression().fit(X, y)
    registry.register_model("flights", model, X.head(5))
    registry.set_alias("flights", "production", 1)
    store.close()
    return project, model, X


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_invocations(model_project):
    project, model, X = model_project
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _MAIN, "serve", "flights@production", "--port", str(port)],
        cwd=project.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        rows = X.iloc[:6]
        body = {"dataframe_split": rows.to_dict(orient="split")}
        r = requests.post(f"{url}/invocations", json=body, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == model.predict(rows).tolist()
        assert r.headers["x-model-version"] == "flights/1"
    finally:
        proc.terminate()
        proc.wait(10)


class _Untrusted:
    """Only pickle holds it; its trust flag is withdrawn after registration."""

    def predict(self, X):
        return [0] * len(X)


def _start(project, *args):
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "serve", *args, "--port", str(port)],
        cwd=project.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            return proc, None
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_serve_models_from_conveyor_yaml_with_capture(model_project):
    import sqlite3

    from conveyor.stores.capture import read_capture

    project, _, X = model_project
    state = project.root / ".conveyor"
    store = open_model_store(f"sqlite:///{state / 'conveyor.db'}")
    registry = Registry(store, open_artifact_store(str(state / "artifacts")))
    registry.register_model("risky", _Untrusted(), X.head(5), trusted=True)
    store.close()
    with sqlite3.connect(state / "conveyor.db") as conn:
        conn.execute("UPDATE model_versions SET trusted = 0")
    (project.root / "conveyor.yaml").write_text(
        "serving:\n  models:\n    - ref: flights@production\n    - ref: risky/1\n"
    )
    proc, url = _start(project, "--capture-window", "0.2", "--capture-sample", "1")
    try:
        assert url is not None, proc.stderr.read() if proc.stderr else ""
        rows = X.iloc[:3]
        r = requests.post(
            f"{url}/v2/models/flights/infer",
            json={
                "id": "yaml-1",
                "inputs": [
                    {"name": c, "datatype": "FP64", "shape": [3], "data": rows[c].tolist()}
                    for c in X.columns
                ],
            },
            timeout=10,
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == "yaml-1"
        r = requests.get(f"{url}/v2/models/risky", timeout=10)
        assert r.status_code == 503
        assert "trusted" in r.json()["error"]
        assert 'conveyor_model_load_failed{model="risky"' in requests.get(f"{url}/metrics").text
        byte_store = open_artifact_store(str(state / "artifacts")).byte_store
        deadline = time.monotonic() + 10
        while read_capture(byte_store, "flights").num_rows < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (
            read_capture(byte_store, "flights").column("request_id").to_pylist() == ["yaml-1"] * 3
        )
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_config_errors_are_one_line(model_project):
    project, _, _ = model_project
    (project.root / "conveyor.yaml").write_text("serving:\n  models:\n    - ref: 3\n")
    proc, url = _start(project)
    assert url is None
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "serving.models[0].ref" in err
    assert "Traceback" not in err
    (project.root / "conveyor.yaml").write_text("serving:\n  capture: {sample: 2}\n")
    proc, url = _start(project, "flights/1")
    assert url is None
    assert "serving.capture.sample" in (proc.stderr.read().decode() if proc.stderr else "")
