"""Real stores (SQLite under tmp_path, a folder of artifacts) and small real models for delivery."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from conveyor.core.loop import CheckRecord
from conveyor.delivery.checks import Holdout
from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store, open_loop_store, open_model_store
from conveyor.stores.metadata.loop import LoopStore


@dataclass
class Stores:
    """A registry and a loop store over one SQLite file, and the artifact folder's bytes."""

    uri: str
    registry: Registry
    loop: LoopStore

    @property
    def byte_store(self) -> Any:
        return self.registry.artifacts.byte_store

    def reached(self, model: str, version: int, stage: str) -> None:
        """Record that ``version`` passed its checks for ``stage`` and moved there (setup)."""
        self.loop.add_checks(
            [
                CheckRecord(model, version, stage, "quality", True, "setup", {}, "0" * 16),
                CheckRecord(model, version, stage, "promotion", True, "setup", {}, "0" * 16),
            ]
        )


@pytest.fixture
def stores(tmp_path) -> Iterator[Stores]:
    uri = f"sqlite:///{tmp_path / 'conveyor.db'}"
    models = open_model_store(uri)
    loop = open_loop_store(uri)
    yield Stores(uri, Registry(models, open_artifact_store(str(tmp_path / "artifacts"))), loop)
    loop.close()
    models.close()


@pytest.fixture
def pg_stores(postgres_url, tmp_path) -> Iterator[Stores]:
    """The same, with the records in the real PostgreSQL (a private schema)."""
    models = open_model_store(postgres_url)
    loop = open_loop_store(postgres_url)
    artifacts = open_artifact_store(str(tmp_path / "artifacts"))
    yield Stores(postgres_url, Registry(models, artifacts), loop)
    loop.close()
    models.close()


@pytest.fixture(scope="session")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    """Breast cancer, four measurement columns (569 rows), a binary target."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.iloc[:, :4], y


@pytest.fixture(scope="session")
def holdout(cancer) -> Holdout:
    X, y = cancer
    return Holdout(X.iloc[400:], y.iloc[400:], name="rows 400-568")


@pytest.fixture(scope="session")
def good_model(cancer) -> LogisticRegression:
    X, y = cancer
    return LogisticRegression(max_iter=2000).fit(X.iloc[:400], y.iloc[:400])


@pytest.fixture(scope="session")
def nan_model(cancer) -> LogisticRegression:
    """A classifier whose probabilities are all NaN (its class predictions look fine)."""
    X, y = cancer
    model = LogisticRegression(max_iter=2000).fit(X.iloc[:400], y.iloc[:400])
    model.coef_ = np.full_like(model.coef_, np.nan)
    return model


@pytest.fixture(scope="session")
def worse_model(cancer) -> LogisticRegression:
    """Fitted with three of its four columns replaced by noise: clearly worse on real rows."""
    X, y = cancer
    rng = np.random.default_rng(0)
    weak = X.copy()
    weak.iloc[:, :3] = rng.normal(size=(len(X), 3))
    return LogisticRegression(max_iter=2000).fit(weak.iloc[:400], y.iloc[:400])
