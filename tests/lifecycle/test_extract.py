import json
import os
import sqlite3
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from conveyor.core.pipeline import pipeline
from conveyor.core.step import step
from conveyor.errors import ValidationError
from conveyor.lifecycle import Dataset, Schema, Watermark, analyze, extract, fingerprint
from conveyor.lifecycle._extract import as_frame
from conveyor.runtime.runner import run_pipeline
from conveyor.runtime.serializers import serializer_for
from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.tracking.tracker import Tracker


@pytest.fixture
def tracker(tmp_path) -> Iterator[Tracker]:
    t = Tracker(
        open_metadata_store(f"sqlite:///{tmp_path}/c.db"), open_artifact_store(str(tmp_path / "a"))
    )
    yield t
    t.close()
    t.runs.close()


def frame(start: int, rows: int = 3) -> pd.DataFrame:
    ids = np.arange(start, start + rows)
    return pd.DataFrame({"id": ids, "x": ids * 0.5, "city": ["a", "b", "c"][:rows]})


def land(path, df: pd.DataFrame, mtime_s: float | None = None) -> None:
    if str(path).endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    if mtime_s is not None:
        os.utime(path, (mtime_s, mtime_s))


# --- files and watermarks ---------------------------------------------------------


def test_a_glob_reads_csv_and_parquet_into_one_dataset(tmp_path):
    land(tmp_path / "a.parquet", frame(0), 1_000)
    land(tmp_path / "b.csv", frame(3), 2_000)
    ds = extract(str(tmp_path / "*"))
    assert isinstance(ds, Dataset)
    assert ds.rows == 6 == len(ds.frame)
    assert ds.frame["id"].tolist() == [0, 1, 2, 3, 4, 5]  # files in path order
    assert ds.files == (str(tmp_path / "a.parquet"), str(tmp_path / "b.csv"))
    assert ds.source == str(tmp_path / "*")
    assert len(ds.fingerprint) == 64
    assert ds.watermark == Watermark(2_000 * 10**9, ds.files)


def test_only_files_new_since_the_watermark_are_read(tmp_path):
    land(tmp_path / "m01.parquet", frame(0), 1_000)
    first = extract(str(tmp_path / "*.parquet"))
    land(tmp_path / "m02.parquet", frame(10), 2_000)
    second = extract(str(tmp_path / "*.parquet"), since=first.watermark)
    assert second.files == (str(tmp_path / "m02.parquet"),)
    assert second.frame["id"].tolist() == [10, 11, 12]
    assert second.watermark.mtime_ns == 2_000 * 10**9
    assert len(second.watermark.files) == 2


def test_a_file_landed_with_an_old_mtime_is_still_new(tmp_path):
    land(tmp_path / "m02.parquet", frame(0), 2_000)
    first = extract(str(tmp_path / "*.parquet"))
    land(tmp_path / "m01.parquet", frame(5), 1_000)  # as cp -p leaves it
    second = extract(str(tmp_path / "*.parquet"), since=first.watermark)
    assert second.files == (str(tmp_path / "m01.parquet"),)
    assert second.watermark.mtime_ns == 2_000 * 10**9


def test_a_rewritten_file_is_read_again(tmp_path):
    land(tmp_path / "a.parquet", frame(0), 1_000)
    first = extract(str(tmp_path / "*.parquet"))
    land(tmp_path / "a.parquet", frame(7), 3_000)
    assert extract(str(tmp_path / "*.parquet"), since=first.watermark).rows == 3


def test_nothing_new_is_an_empty_dataset_with_the_same_watermark(tmp_path):
    land(tmp_path / "a.parquet", frame(0), 1_000)
    first = extract(str(tmp_path / "*.parquet"))
    again = extract(str(tmp_path / "*.parquet"), since=first.watermark)
    assert again.rows == 0
    assert again.files == ()
    assert again.watermark == first.watermark


def test_a_state_file_keeps_the_watermark_between_calls(tmp_path):
    state = tmp_path / "state" / "watermark.json"
    land(tmp_path / "a.csv", frame(0), 1_000)
    assert extract(str(tmp_path / "*.csv"), state=str(state)).rows == 3
    saved = json.loads(state.read_text())
    assert saved == {"mtime_ns": 1_000 * 10**9, "files": [str(tmp_path / "a.csv")]}
    assert extract(str(tmp_path / "*.csv"), state=str(state)).rows == 0
    land(tmp_path / "b.csv", frame(3), 2_000)
    assert extract(str(tmp_path / "*.csv"), state=str(state)).frame["id"].tolist() == [3, 4, 5]
    assert Watermark.load(state).mtime_ns == 2_000 * 10**9


def test_watermarks_round_trip_and_refuse_garbage(tmp_path):
    mark = Watermark(5, ("/x/a.csv",))
    assert Watermark.from_dict(json.loads(json.dumps(mark.to_dict()))) == mark
    assert Watermark.load(tmp_path / "absent.json") == Watermark()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValidationError, match=r"bad\.json"):
        Watermark.load(tmp_path / "bad.json")
    with pytest.raises(ValidationError, match="mtime_ns"):
        Watermark.from_dict({"mtime": 1})
    with pytest.raises(ValidationError) as info:
        Watermark.from_dict({"mtime_ns": 1, "files": [1]})
    assert info.value.field == "watermark.files"


def test_bad_patterns_and_files_are_named(tmp_path):
    with pytest.raises(ValidationError, match="matches no file") as info:
        extract(str(tmp_path / "*.parquet"))
    assert info.value.field == "pattern"
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValidationError, match=r"notes\.txt is not CSV or Parquet"):
        extract(str(tmp_path / "*"))
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValidationError, match=r"cannot read .*broken\.parquet"):
        extract(str(tmp_path / "broken.parquet"))


def test_files_whose_columns_disagree_are_refused(tmp_path):
    land(tmp_path / "a.parquet", pd.DataFrame({"v": [1, 2]}))
    land(tmp_path / "b.parquet", pd.DataFrame({"v": ["x", "y"]}))
    with pytest.raises(ValidationError, match="columns do not agree"):
        extract(str(tmp_path / "*.parquet"))


def test_files_with_more_columns_are_united(tmp_path):
    land(tmp_path / "a.parquet", pd.DataFrame({"v": [1, 2]}))
    land(tmp_path / "b.parquet", pd.DataFrame({"v": [3], "w": [0.5]}))
    ds = extract(str(tmp_path / "*.parquet"))
    assert ds.frame["w"].isna().tolist() == [True, True, False]


# --- SQL and DuckDB ---------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path):
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as db:
        db.execute("create table orders (id integer, city text, amount real)")
        db.executemany(
            "insert into orders values (?, ?, ?)",
            [(1, "Oslo", 9.5), (2, "Rome", 20.0), (3, "Oslo", 31.25), (4, "Lima", None)],
        )
    return path


def test_sql_through_a_sqlalchemy_url_with_bound_parameters(sqlite_file):
    ds = extract(
        sql="select id, amount from orders where city = :city order by id",
        url=f"sqlite:///{sqlite_file}",
        params={"city": "Oslo"},
    )
    assert ds.frame.to_dict("list") == {"id": [1, 3], "amount": [9.5, 31.25]}
    assert ds.source.startswith("sql sqlite:///")
    assert "where city = :city" in ds.source
    assert ds.watermark is None
    assert ds.files == ()


def test_a_parameter_is_bound_not_formatted(sqlite_file):
    ds = extract(
        sql="select count(*) as n from orders where city = :city",
        url=f"sqlite:///{sqlite_file}",
        params={"city": "Oslo' or '1'='1"},
    )
    assert ds.frame["n"].tolist() == [0]


def test_sql_errors_are_named(sqlite_file):
    with pytest.raises(ValidationError, match="no such table: nope") as info:
        extract(sql="select * from nope", url=f"sqlite:///{sqlite_file}")
    assert info.value.field == "sql"
    with pytest.raises(ValidationError) as info:
        extract(sql="select 1", url="nosuchdialect://x")
    assert info.value.field == "url"


def test_a_duckdb_query_over_parquet(tmp_path):
    land(tmp_path / "t.parquet", frame(0, 3))
    query = f"select id, x from '{tmp_path / 't.parquet'}' where id >= ? order by id"
    ds = extract(duckdb=query, params=[1])
    assert ds.frame["id"].tolist() == [1, 2]
    assert ds.source == f"duckdb: {query}"
    with pytest.raises(ValidationError, match="the query failed") as info:
        extract(duckdb="select * from no_such_table")
    assert info.value.field == "duckdb"


def test_one_source_is_required():
    with pytest.raises(ValidationError, match="exactly one"):
        extract()
    with pytest.raises(ValidationError, match="exactly one"):
        extract("a.csv", duckdb="select 1")
    with pytest.raises(ValidationError, match="sql and url"):
        extract(sql="select 1")
    with pytest.raises(ValidationError, match="watermarks"):
        extract(duckdb="select 1", state="w.json")


# --- fingerprint, frames, storage -------------------------------------------------


def test_the_fingerprint_follows_content_not_column_order_or_index():
    df = frame(0)
    reordered = df[["x", "city", "id"]]
    indexed = df.set_axis([7, 8, 9])
    assert fingerprint(df) == fingerprint(reordered) == fingerprint(indexed)
    changed = df.assign(x=[0.0, 0.5, 1.5])
    assert fingerprint(changed) != fingerprint(df)
    assert fingerprint(df.iloc[::-1]) != fingerprint(df)  # row order is content
    assert fingerprint(df.astype({"id": "int32"})) != fingerprint(df)  # so are types


def test_a_fingerprint_is_the_same_after_csv_and_parquet(tmp_path):
    df = frame(0)
    land(tmp_path / "a.csv", df)
    land(tmp_path / "b.parquet", df)
    assert (
        extract(str(tmp_path / "a.csv")).fingerprint
        == extract(str(tmp_path / "b.parquet")).fingerprint
    )


def test_as_frame_takes_tables_of_every_kind():
    import polars as pl
    import pyarrow as pa

    df = frame(0)
    assert as_frame(Dataset.of(df, "mem")) is df
    assert as_frame(pa.Table.from_pandas(df, preserve_index=False))["id"].tolist() == [0, 1, 2]
    assert as_frame(pl.from_pandas(df))["city"].tolist() == ["a", "b", "c"]
    with pytest.raises(ValidationError, match="must be a Dataset"):
        as_frame([1, 2])


def test_a_dataset_round_trips_through_its_bytes(tmp_path):
    df = frame(0).assign(when=pd.to_datetime(["2013-01-01", "2013-01-02", None], utc=True))
    land(tmp_path / "a.parquet", df, 1_000)
    ds = extract(str(tmp_path / "*.parquet"))
    back = Dataset.from_bytes(ds.to_bytes())
    pd.testing.assert_frame_equal(back.frame, ds.frame)
    assert (back.fingerprint, back.rows, back.source, back.files, back.watermark) == (
        ds.fingerprint,
        ds.rows,
        ds.source,
        ds.files,
        ds.watermark,
    )
    assert fingerprint(back.frame) == ds.fingerprint
    with pytest.raises(ValidationError, match="not Parquet"):
        Dataset.from_bytes(b"nope")
    with pytest.raises(ValidationError, match=r"no conveyor\.dataset"):
        Dataset.from_bytes(pd.DataFrame({"a": [1]}).to_parquet())


def test_importing_lifecycle_registers_the_dataset_serializer():
    ser = serializer_for(Dataset.of(frame(0), "mem"))
    assert ser is not None
    assert ser.name == "conveyor.dataset"
    assert ser.suffix == ".parquet"


# --- inside a pipeline ------------------------------------------------------------


@step
def count_rows(data: Dataset) -> int:
    return data.rows


@pipeline
def landing(pattern: str):
    ds = extract(pattern)
    count_rows(ds)
    analyze(ds)


def test_extract_feeds_later_steps_in_a_tracked_pipeline(tracker, tmp_path):
    land(tmp_path / "a.parquet", frame(0), 1_000)
    result = run_pipeline(landing, {"pattern": str(tmp_path / "*.parquet")}, tracker=tracker)
    assert result.steps["count_rows"].output == 3
    extracted = tracker.get_run(result.steps["extract"].run_id)
    record = next(a for a in extracted.artifacts if a.path == "outputs/output.parquet")
    stored = Dataset.from_bytes(tracker.artifacts.get_bytes(record.sha256))
    assert stored.fingerprint == fingerprint(frame(0))
    assert stored.files == (str(tmp_path / "a.parquet"),)
    analyzed = tracker.get_run(result.steps["analyze"].run_id)
    paths = {a.path for a in analyzed.artifacts}
    assert {"outputs/profile.json", "outputs/schema.yaml"} <= paths
    schema_record = next(a for a in analyzed.artifacts if a.path == "outputs/schema.yaml")
    schema = Schema.from_bytes(tracker.artifacts.get_bytes(schema_record.sha256))
    assert schema["id"].type == "int"

    # A second run reads the files again (extract is never cached): new data shows.
    land(tmp_path / "b.parquet", frame(3), 2_000)
    again = run_pipeline(landing, {"pattern": str(tmp_path / "*.parquet")}, tracker=tracker)
    assert not again.steps["extract"].cached
    assert again.steps["count_rows"].output == 6
