import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import ValidationError
from conveyor.profiling import Profile, profile


def test_profile_counts_types_and_moments():
    frame = pd.DataFrame(
        {
            "x": [1.0, np.nan, np.inf, 3.0, 2.0],
            "s": ["a", None, "b", "a", "a"],
            "b": [True, False, True, True, True],
            "t": pd.to_datetime(["2024-01-01", "2024-01-03", None, "2024-01-02", "2024-01-01"]),
            "td": pd.to_timedelta([1, 2, 3, 4, 5], "s"),
        }
    )
    prof = profile(frame)
    assert prof.rows == 5
    assert prof.skipped["td"].startswith("timedelta64")
    x = prof["x"]
    assert (x.kind, x.count, x.nulls, x.infinite, x.valid) == ("numeric", 5, 1, 1, 3)
    assert (x.moments.minimum, x.moments.maximum, x.moments.mean) == (1.0, 3.0, 2.0)
    assert x.distinct == 3
    s = prof["s"]
    assert (s.kind, s.nulls, s.distinct, s.top(1)) == ("categorical", 1, 2, [("a", 3)])
    assert prof["b"].kind == "boolean"
    assert prof["b"].top(2) == [("true", 4), ("false", 1)]
    summary = prof.to_dict()["columns"]
    assert summary["t"]["min"] == "2024-01-01T00:00:00+00:00"
    assert summary["x"]["quantiles"]["p50"] == 2.0
    assert summary["s"]["top"][0] == {"value": "a", "count": 3}
    with pytest.raises(ValidationError, match="nope: is not a column"):
        prof["nope"]


def test_merge_is_like_profiling_everything_at_once(make):
    a, b = make(30_000, seed=1), make(20_000, shift=0.5, seed=2)
    whole = profile(pd.concat([a, b], ignore_index=True), k=512)
    merged = profile(a, k=512).merge(profile(b, k=512))
    assert merged.rows == whole.rows == 50_000
    for name, cp in whole.columns.items():
        other = merged[name]
        assert (other.count, other.nulls, other.infinite) == (cp.count, cp.nulls, cp.infinite)
        assert other.top(10) == cp.top(10)
        np.testing.assert_array_equal(other.hll.registers, cp.hll.registers)
        if not cp.numeric:
            continue
        m, w = other.moments, cp.moments
        assert (m.count, m.minimum, m.maximum) == (w.count, w.minimum, w.maximum)
        assert m.mean == pytest.approx(w.mean, rel=1e-12)
        assert m.std == pytest.approx(w.std, rel=1e-12)
    values = np.concatenate([a["normal"].to_numpy(), b["normal"].to_numpy()])
    points = np.linspace(-3, 4, 200)
    true = np.searchsorted(np.sort(values), points, "right") / values.size
    sketch = merged["normal"].quantiles
    assert np.abs(sketch.cdf(points) - true).max() <= sketch.epsilon
    assert merged["normal"].distinct == pytest.approx(values.size, rel=0.04)


def test_merge_is_associative_for_the_exact_parts(make):
    parts = [profile(make(3000, seed=s)) for s in range(3)]
    left = parts[0].merge(parts[1]).merge(parts[2])
    right = parts[0].merge(parts[1].merge(parts[2]))
    for name in left.columns:
        assert left[name].count == right[name].count
        assert left[name].top(5) == right[name].top(5)
        assert left[name].moments.mean == pytest.approx(right[name].moments.mean, rel=1e-12)


def test_merge_refuses_different_columns_or_kinds():
    one = profile(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(ValidationError, match="differ in columns"):
        one.merge(profile(pd.DataFrame({"y": [1.0]})))
    with pytest.raises(ValidationError, match="x: cannot merge a numeric and a categorical"):
        one.merge(profile(pd.DataFrame({"x": ["a"]})))


def test_parquet_streams_to_the_same_profile(parquet_pair, frames):
    path, _ = parquet_pair
    streamed = profile(path, batch_rows=700)
    in_memory = profile(frames[0])
    for name, cp in in_memory.columns.items():
        other = streamed[name]
        assert (other.count, other.nulls, other.top(5)) == (cp.count, cp.nulls, cp.top(5))
        if cp.numeric:
            assert other.moments.mean == pytest.approx(cp.moments.mean, rel=1e-12)


def test_bytes_round_trip_and_are_deterministic(frames):
    prof = profile(frames[0])
    data = prof.to_bytes()
    assert profile(frames[0]).to_bytes() == data
    back = Profile.from_bytes(data)
    assert back.to_bytes() == data
    assert back.to_dict() == prof.to_dict()
    assert json.loads(data)["format"] == "conveyor.profile/1"


@pytest.mark.parametrize("data", [b"not json", b'{"format": "other"}', b"[1, 2]", b"\xff"])
def test_other_bytes_are_refused(data):
    with pytest.raises(ValidationError, match="profile: is not a conveyor profile"):
        Profile.from_bytes(data)


def test_empty_and_all_null_columns():
    empty = profile(pd.DataFrame({"x": np.array([], float), "s": pd.Series([], dtype=object)}))
    assert empty.rows == 0
    assert empty["x"].count == 0
    assert empty["x"].distinct == 0
    assert empty.to_dict()["columns"]["x"]["min"] is None
    nulls = profile(pa.table({"x": pa.array([None, None], pa.float64()), "n": pa.nulls(2)}))
    assert (nulls["x"].nulls, nulls["n"].nulls, nulls["n"].distinct) == (2, 2, 0)
    Profile.from_bytes(nulls.to_bytes())


def test_columns_may_be_chosen(make):
    prof = profile(make(100), columns=["normal", "category"])
    assert list(prof.columns) == ["normal", "category"]
    with pytest.raises(ValidationError, match="missing: is not a column"):
        profile(make(10), columns=["missing"])


def test_histogram_counts_add_up():
    prof = profile(pd.DataFrame({"x": np.arange(1000.0)}), k=64)
    edges, counts = prof["x"].histogram(10)
    assert edges[0] == 0.0
    assert edges[-1] == 999.0
    assert counts.sum() == 1000
    assert np.all(np.abs(counts - 100) <= 2 * prof["x"].quantiles.rank_error + 1)


@pytest.mark.slow
def test_memory_stays_bounded_on_a_big_parquet_file(tmp_path):
    """3M rows x 30 columns (720 MB of float64) profile from Parquet in well under 500 MB."""
    import pyarrow.parquet as pq

    path = tmp_path / "big.parquet"
    rng = np.random.default_rng(0)
    schema = pa.schema([(f"c{i}", pa.float64()) for i in range(30)])
    with pq.ParquetWriter(path, schema) as writer:
        for _ in range(6):
            columns = [rng.normal(size=500_000) for _ in range(30)]
            writer.write_table(pa.table(columns, schema=schema), row_group_size=250_000)
    # VmHWM, not ru_maxrss: the latter inherits the forking parent's (pytest's) peak.
    code = (
        "from conveyor.profiling import profile; "
        f"p = profile({str(path)!r}); assert p.rows == 3_000_000, p.rows; "
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    peak_mb = int(done.stdout.split()[-1]) / 1024
    assert os.path.getsize(path) > 500e6
    assert peak_mb < 500, peak_mb
