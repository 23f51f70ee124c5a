"""What the project's tests share: a small sample of the flights and its frozen schema."""

import sys
from pathlib import Path

import pandas as pd
import pytest

from conveyor import lifecycle as lc

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "pipelines"))  # `from training import ...` in the tests


@pytest.fixture(scope="session")
def flights() -> pd.DataFrame:
    """3,000 flights of the first landed month: small enough for every push."""
    files = sorted((PROJECT / "data").glob("flights-*.parquet"))
    frame = pd.read_parquet(files[0]) if files else lc.load_flights(months=[1])
    return frame.sample(min(3000, len(frame)), random_state=0)


@pytest.fixture(scope="session")
def schema(flights: pd.DataFrame) -> lc.Schema:
    """The frozen schema (schema.yaml) if the project has one, else the sample's own."""
    path = PROJECT / "schema.yaml"
    if path.is_file():
        return lc.Schema.load(path)
    return lc.analyze(flights)[1]


def feature_transform(schema: lc.Schema) -> lc.FeatureTransform:
    """The transform training fits: numbers imputed, text encoded as categories."""
    from training import FEATURES

    numeric = [c for c in FEATURES if schema[c].type in ("int", "float")]
    categorical = [c for c in FEATURES if c not in numeric]
    return lc.make_feature_transform(numeric, categorical)
