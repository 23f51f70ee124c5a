"""Data with known drift for the monitoring tests, as pandas frames and Parquet files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def make_frame(rows: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Numeric, categorical, boolean and datetime columns; ``shift`` moves some of them."""
    rng = np.random.default_rng(seed)
    levels = np.array(["a", "b", "c", "d", "e"], dtype=object)
    p = np.full(5, 0.2) if not shift else np.linspace(1, 1 + 4 * shift, 5) / (5 + 10 * shift)
    return pd.DataFrame(
        {
            "normal": rng.normal(shift, 1.0, rows),
            "lognormal": rng.lognormal(0.0, 0.5, rows),
            "integer": rng.integers(0, 50, rows),
            "few": rng.integers(0, 4, rows).astype(float),
            "category": levels[rng.choice(5, rows, p=p / p.sum())],
            "flag": rng.random(rows) < 0.3 + shift / 4,
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, rows), "s"),
        }
    )


@pytest.fixture
def make():
    """The frame maker, for tests that need their own sizes."""
    return make_frame


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference of 5,000 rows and a current window of 4,000 with drift in some columns."""
    return make_frame(5000, seed=1), make_frame(4000, shift=0.3, seed=2)


@pytest.fixture
def parquet_pair(tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[Path, Path]:
    """The same frames as Parquet files."""
    ref, cur = tmp_path / "ref.parquet", tmp_path / "cur.parquet"
    frames[0].to_parquet(ref, row_group_size=1500)
    frames[1].to_parquet(cur, row_group_size=1500)
    return ref, cur
