import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import ValidationError
from conveyor.profiling.tables import count_values, open_source


def _mixed() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "f": [1.5, np.nan, np.inf, 2.0],
            "i": np.array([1, 2, 3, 4], dtype=np.int32),
            "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
            "b": [True, False, True, True],
            "s": ["x", None, "y", "x"],
            "cat": pd.Categorical(["u", "v", "u", None]),
            "obj": pd.Series([1, "a", 2.5, None], dtype=object),
            "t": pd.to_datetime(["2024-01-01", None, "2024-01-02", "2024-01-03"], utc=True),
            "td": pd.to_timedelta([1, 2, 3, 4], "s"),
        }
    )


def test_pandas_kinds_and_values():
    source = open_source(_mixed())
    kinds = {name: source.kind(name) for name in source.names}
    assert kinds == {
        "f": "numeric",
        "i": "numeric",
        "nullable": "numeric",
        "b": "boolean",
        "s": "categorical",
        "cat": "categorical",
        "obj": "categorical",
        "t": "datetime",
        "td": None,
    }
    f = source.column("f").numbers
    assert np.isnan(f[1])
    assert np.isinf(f[2])
    assert source.column("i").integer
    assert np.isnan(source.column("nullable").numbers[1])
    assert source.column("b").strings.to_pylist() == ["true", "false", "true", "true"]
    assert source.column("cat").strings.to_pylist() == ["u", "v", "u", None]
    assert source.column("obj").strings.to_pylist() == ["1", "a", "2.5", None]
    seconds = source.column("t").numbers
    assert seconds[0] == pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    assert np.isnan(seconds[1])
    with pytest.raises(ValidationError, match="td: type"):
        source.column("td")


def test_float_columns_are_not_copied():
    frame = pd.DataFrame({"a": np.arange(5.0), "b": np.arange(5.0)})
    numbers = open_source(frame).column("a").numbers
    assert np.shares_memory(numbers, frame["a"].to_numpy())


def test_arrow_polars_and_parquet_agree(tmp_path):
    frame = _mixed().drop(columns=["td", "obj"])
    table = pa.Table.from_pandas(frame, preserve_index=False)
    path = tmp_path / "mixed.parquet"
    frame.to_parquet(path)
    sources = [open_source(frame), open_source(table), open_source(path), open_source(str(path))]
    try:
        import polars as pl

        sources.append(open_source(pl.from_arrow(table)))
    except ImportError:
        pass
    for source in sources:
        assert source.num_rows == 4
        assert [source.kind(n) for n in source.names] == [
            "numeric",
            "numeric",
            "numeric",
            "boolean",
            "categorical",
            "categorical",
            "datetime",
        ]
        np.testing.assert_array_equal(source.column("f").numbers, frame["f"].to_numpy())
        assert source.column("s").strings.to_pylist() == ["x", None, "y", "x"]


def test_batches_cover_every_row_once(tmp_path):
    frame = pd.DataFrame({"x": np.arange(10.0), "y": list("abcdefghij")})
    path = tmp_path / "x.parquet"
    frame.to_parquet(path, row_group_size=4)
    for data in (frame, pa.Table.from_pandas(frame), path):
        batches = list(open_source(data).batches(3, ["x"]))
        joined = np.concatenate([b.column("x").numbers for b in batches])
        np.testing.assert_array_equal(joined, np.arange(10.0))
        assert all(b.names == ("x",) for b in batches)


def test_an_empty_table_still_yields_one_empty_batch(tmp_path):
    frame = pd.DataFrame({"x": np.array([], dtype=float)})
    path = tmp_path / "empty.parquet"
    frame.to_parquet(path)
    for data in (frame, path):
        (batch,) = open_source(data).batches(10, ["x"])
        assert batch.num_rows == 0


def test_bad_input_names_the_rule(tmp_path):
    with pytest.raises(ValidationError, match="DataFrame"):
        open_source([1, 2, 3])
    with pytest.raises(ValidationError, match="is not a file"):
        open_source(tmp_path / "nope.parquet")
    duplicated = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(ValidationError, match="a: column names must be unique"):
        open_source(duplicated)


def test_count_values_leaves_nulls_out():
    values, counts, nulls = count_values(pa.chunked_array([["a", None, "a", "b", None]]))
    assert dict(zip(values.to_pylist(), counts.tolist(), strict=True)) == {"a": 2, "b": 1}
    assert nulls == 2
