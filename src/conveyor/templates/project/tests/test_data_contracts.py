"""Data contracts: every landed file meets the frozen schema (schema.yaml)."""

from pathlib import Path

import pandas as pd
import pytest

from conveyor.testing import assert_matches_schema

PROJECT = Path(__file__).resolve().parents[1]
SCHEMA = PROJECT / "schema.yaml"
LANDED = sorted((PROJECT / "data").glob("*.parquet"))


@pytest.mark.skipif(not SCHEMA.is_file(), reason="no schema.yaml: `conveyor init` freezes one")
@pytest.mark.parametrize("path", LANDED, ids=lambda path: path.name)
def test_landed_data_meets_the_schema(path: Path) -> None:
    """Columns, types, required values; drifted values only warn (see schema.yaml)."""
    assert_matches_schema(pd.read_parquet(path), SCHEMA)
