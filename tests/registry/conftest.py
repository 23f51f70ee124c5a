"""Registries over fresh stores, and real data from scikit-learn's bundled sets."""

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from conveyor.registry import Registry
from conveyor.stores.backends import open_artifact_store
from conveyor.stores.metadata.sql.models import SqlModelStore


@pytest.fixture
def registry(tmp_path):
    models = SqlModelStore(f"sqlite:///{tmp_path / 'conveyor.db'}")
    yield Registry(models, open_artifact_store(str(tmp_path / "artifacts")))
    models.close()


@pytest.fixture(scope="session")
def cancer():
    """Breast cancer: 569 rows, 30 float columns, a binary target."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def diabetes():
    """Diabetes: 442 rows, 10 float columns, a continuous target."""
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def mixed(cancer):
    """Breast cancer with a string and a categorical column derived from the measurements."""
    X, y = cancer
    frame = X[["mean radius", "mean texture", "mean smoothness"]].copy()
    size = pd.cut(X["mean radius"], [0, 12, 16, 100], labels=["small", "medium", "large"])
    frame["size"] = size.astype(str).astype(object)
    frame["texture_band"] = pd.cut(X["mean texture"], [0, 17, 22, 100], labels=["lo", "mid", "hi"])
    return frame, y


@pytest.fixture(scope="session")
def logistic(cancer):
    """A logistic regression fitted once on the breast cancer data."""
    from sklearn.linear_model import LogisticRegression

    X, y = cancer
    return LogisticRegression(max_iter=5000).fit(X, y)
