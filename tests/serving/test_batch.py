"""Batch inference from Parquet to Parquet: chunks, keys, probabilities, and bad rows named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conveyor.errors import ValidationError
from conveyor.serving.batch import check_chunk, predict_file


@pytest.fixture
def loaded(registry, data, make_model):
    X, _ = data
    registry.register_model("cancer", make_model(data), X.head(20))
    return registry.load_model("cancer/1")


def _input(tmp_path, data, n: int = 250):
    X = data[0].iloc[:n].reset_index(drop=True)
    frame = X.assign(patient=[f"p{i}" for i in range(n)])
    path = tmp_path / "in.parquet"
    frame.to_parquet(path, index=False)
    return path, X


def test_streams_in_chunks_and_writes_keys_and_predictions(loaded, data, tmp_path):
    path, X = _input(tmp_path, data)
    seen: list[int] = []
    result = predict_file(
        loaded, path, tmp_path / "out" / "out.parquet", chunk_rows=64, on_chunk=seen.append
    )
    assert (result.rows, result.chunks) == (250, 4)
    assert seen == [64, 64, 64, 58]
    assert result.key_columns == ("patient",)
    out = pq.read_table(result.output).to_pandas()
    assert list(out.columns) == ["patient", "prediction", "probability"]
    assert out["patient"].tolist() == [f"p{i}" for i in range(250)]
    assert out["prediction"].tolist() == loaded.predict(X).tolist()
    np.testing.assert_allclose(out["probability"], loaded.predict_proba(X)[:, 1])


def test_a_bad_row_names_column_rule_and_row_and_writes_nothing(loaded, data, tmp_path):
    X = data[0].iloc[:200].reset_index(drop=True).copy()
    X.loc[150, "mean texture"] = np.nan
    path = tmp_path / "bad.parquet"
    X.to_parquet(path, index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(ValidationError) as info:
        predict_file(loaded, path, out, chunk_rows=64)
    assert info.value.field == "column 'mean texture'"
    assert "row 150" in info.value.rule
    assert "must not be null for this model" in info.value.rule
    assert not out.exists()
    assert not list(tmp_path.glob(".out.parquet*"))


def test_a_column_of_the_wrong_type_is_named(loaded, data, tmp_path):
    X = data[0].iloc[:20].astype({"mean radius": str})
    X.to_parquet(tmp_path / "str.parquet", index=False)
    with pytest.raises(ValidationError) as info:
        predict_file(loaded, tmp_path / "str.parquet", tmp_path / "o.parquet")
    assert info.value.field == "column 'mean radius'"
    assert "numbers" in info.value.rule


def test_the_first_bad_row_is_counted_across_chunks(loaded, data):
    X = data[0].iloc[:10].reset_index(drop=True).copy()
    prepared = check_chunk(loaded.signature, X.iloc[:5], start=100)
    assert len(prepared) == 5
    X["mean texture"] = X["mean texture"].astype(str)
    X.loc[3, "mean texture"] = "x"
    with pytest.raises(ValidationError) as info:
        check_chunk(loaded.signature, X, start=100)
    assert info.value.field == "column 'mean texture'"
    assert "row 103" in info.value.rule


def test_missing_columns_and_bad_options(loaded, data, tmp_path):
    path, _ = _input(tmp_path, data, 20)
    pd.read_parquet(path).drop(columns=["size"]).to_parquet(tmp_path / "nosize.parquet")
    with pytest.raises(ValidationError) as info:
        predict_file(loaded, tmp_path / "nosize.parquet", tmp_path / "o.parquet")
    assert "size" in info.value.field
    with pytest.raises(ValidationError, match="--key-column"):
        predict_file(loaded, path, tmp_path / "o.parquet", key_columns=["nope"])
    with pytest.raises(ValidationError, match="--chunk-rows"):
        predict_file(loaded, path, tmp_path / "o.parquet", chunk_rows=0)
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(ValidationError, match="--input"):
        predict_file(loaded, tmp_path / "text.parquet", tmp_path / "o.parquet")
    with pytest.raises(ValidationError, match="--input"):
        predict_file(loaded, tmp_path / "absent.parquet", tmp_path / "o.parquet")
