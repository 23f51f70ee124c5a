"""A real uvicorn server over a registry with registered models, driven with requests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest
import uvicorn
from sklearn.datasets import load_breast_cancer

from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store
from conveyor.stores.metadata.sql.models import SqlModelStore


@dataclass
class Served:
    """A running server: its base URL, the registry behind it, and its app."""

    url: str
    registry: Registry
    app: object


@pytest.fixture
def registry(tmp_path) -> Iterator[Registry]:
    models = SqlModelStore(f"sqlite:///{tmp_path / 'conveyor.db'}")
    yield Registry(models, open_artifact_store(str(tmp_path / "artifacts")))
    models.close()


@pytest.fixture(scope="session")
def data() -> tuple[pd.DataFrame, pd.Series]:
    """Breast cancer measurements plus a string column derived from them."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    frame = X[["mean radius", "mean texture", "mean smoothness"]].copy()
    frame["size"] = pd.cut(
        X["mean radius"], [0, 12, 16, 100], labels=["small", "medium", "large"]
    ).astype(str)
    frame["size"] = frame["size"].astype(object)
    return frame, y


def build_model(data: tuple[pd.DataFrame, pd.Series], c: float = 1.0) -> object:
    """A ColumnTransformer (scaled numbers, one-hot size) + LogisticRegression pipeline."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = data
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["mean radius", "mean texture", "mean smoothness"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["size"]),
        ]
    )
    return make_pipeline(pre, LogisticRegression(C=c, max_iter=2000)).fit(X, y)


@pytest.fixture
def make_model():
    """`build_model`, for tests that register another version."""
    return build_model


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve() -> Iterator[object]:
    """Start apps on real uvicorn servers in threads; stopped at teardown."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: object) -> str:
        port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def served(registry, data, serve) -> Served:
    """``cancer`` v1 at ``production`` served with a short poll."""
    from conveyor.serving import create_app

    X, _ = data
    registry.register_model("cancer", build_model(data), X.head(20))
    registry.set_alias("cancer", "production", 1)
    app = create_app(registry, ["cancer@production"], max_body_bytes=100_000, poll_seconds=0.2)
    return Served(serve(app), registry, app)
