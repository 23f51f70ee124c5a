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
