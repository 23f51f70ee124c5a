"""The capture log on a real folder: files by window, pruning by name, feedback joined by id."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from conveyor.errors import ValidationError
from conveyor.stores.artifacts.fsspec_store import FsspecByteStore
from conveyor.stores.capture import (
    capture_keys,
    inputs_of,
    join_feedback,
    outputs_of,
    read_capture,
    read_feedback,
    write_capture,
    write_feedback,
)


def _rows(ids: list[str], stamps: list[int], version: int = 1, **inputs: list[object]) -> pa.Table:
    n = len(ids)
    cols: dict[str, pa.Array] = {
        "request_id": pa.array(ids, pa.string()),
        "row": pa.array([0] * n, pa.int32()),
        "timestamp": pa.array(stamps, pa.int64()),
        "model": pa.array(["flights"] * n, pa.string()),
        "version": pa.array([version] * n, pa.int64()),
        "route": pa.array(["primary"] * n, pa.string()),
        "latency_ms": pa.array([1.5] * n, pa.float64()),
        "status": pa.array([200] * n, pa.int16()),
    }
    for name, values in inputs.items():
        cols[f"in.{name}"] = pa.array(values)
    cols["out.prediction"] = pa.array([0.25] * n, pa.float64())
    return pa.table(cols)


@pytest.fixture
def store(tmp_path: Path) -> FsspecByteStore:
    return FsspecByteStore(str(tmp_path / "artifacts"))


def test_rows_round_trip_and_windows_prune_files(store: FsspecByteStore) -> None:
    write_capture(store, "flights", _rows(["a", "b"], [1000, 2000], distance=[100.0, 200.0]))
    write_capture(store, "flights", _rows(["c"], [5000], version=2, distance=[300.0]))
    assert len(capture_keys(store, "flights")) == 2
    assert len(capture_keys(store, "flights", start_ms=3000)) == 1
    assert len(capture_keys(store, "flights", end_ms=1000)) == 0
    got = read_capture(store, "flights", start_ms=1500, end_ms=6000)
    assert got.column("request_id").to_pylist() == ["b", "c"]
    assert got.column("version").to_pylist() == [1, 2]
    assert inputs_of(got).column_names == ["distance"]
    assert outputs_of(got).column("prediction").to_pylist() == [0.25, 0.25]


def test_files_with_different_inputs_are_unified(store: FsspecByteStore) -> None:
    write_capture(store, "flights", _rows(["a"], [1000], distance=[1.0]))
    write_capture(store, "flights", _rows(["b"], [2000], carrier=["UA"]))
    got = read_capture(store, "flights")
    assert got.column("in.distance").to_pylist() == [1.0, None]
    assert got.column("in.carrier").to_pylist() == [None, "UA"]


def test_an_empty_window_reads_as_an_empty_table_with_the_columns(store: FsspecByteStore) -> None:
    got = read_capture(store, "flights", start_ms=0, end_ms=10)
    assert got.num_rows == 0
    assert "request_id" in got.column_names
    assert write_capture(store, "flights", _rows([], [])) is None


def test_feedback_joins_by_request_id_and_the_newest_label_wins(store: FsspecByteStore) -> None:
    write_capture(store, "flights", _rows(["a", "b", "c"], [1000, 2000, 3000], x=[1, 2, 3]))
    write_feedback(store, "flights", ["a", "b"], [1, 0], timestamp_ms=10_000)
    write_feedback(store, "flights", ["b"], [1], timestamp_ms=20_000)
    labels = read_feedback(store, "flights")
    assert sorted(
        zip(
            labels.column("request_id").to_pylist(), labels.column("label").to_pylist(), strict=True
        )
    ) == [("a", 1), ("b", 1)]
    joined = join_feedback(read_capture(store, "flights"), labels)
    assert joined.column("label").to_pylist() == [1, 1, None]
    assert joined.column("label_delay_ms").to_pylist() == [9_000, 18_000, None]
    none = join_feedback(read_capture(store, "flights"), read_feedback(store, "flights", end_ms=1))
    assert none.column("label").null_count == 3


@pytest.mark.parametrize(
    ("ids", "labels", "rows", "field"),
    [
        (["a", "b"], [1], None, "labels"),
        (["a"], [None], None, "label"),
        ([""], [1], None, "request_id"),
        (["a"], [1], [-1], "row"),
        (["a", "b"], [1, "x"], None, "label"),
    ],
)
def test_bad_feedback_names_the_field_and_stores_nothing(
    store: FsspecByteStore, ids: list[str], labels: list[object], rows: list[int] | None, field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        write_feedback(store, "flights", ids, labels, rows=rows)
    assert info.value.field == field
    assert capture_keys(store, "flights", kind="feedback") == []


def test_model_names_cannot_escape_the_capture_folder(store: FsspecByteStore) -> None:
    with pytest.raises(ValidationError, match="model"):
        write_capture(store, "../etc", _rows(["a"], [1]))
    with pytest.raises(ValidationError, match="model"):
        read_capture(store, "a/b")


def test_missing_capture_columns_are_refused(store: FsspecByteStore) -> None:
    with pytest.raises(ValidationError, match="timestamp"):
        write_capture(store, "flights", _rows(["a"], [1]).drop_columns(["timestamp"]))


def test_files_are_lz4_with_statistics_for_the_timestamp_only(
    store: FsspecByteStore, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    key = write_capture(store, "flights", _rows(["a", "b"], [1000, 2000], distance=[1.0, 2.0]))
    assert key is not None
    meta = pq.ParquetFile(tmp_path / "artifacts" / key).metadata
    group = meta.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert {c.compression for c in columns.values()} == {"LZ4"}  # LZ4_RAW in the file
    assert columns["timestamp"].statistics.min == 1000
    assert columns["timestamp"].statistics.max == 2000
    assert columns["in.distance"].statistics is None


def test_full_columns_are_written_required_and_read_back_nullable(
    store: FsspecByteStore, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    full = write_capture(store, "flights", _rows(["a"], [1000], distance=[1.0]))
    write_capture(store, "flights", _rows(["b"], [2000], distance=[None]))
    assert full is not None
    written = pq.read_schema(tmp_path / "artifacts" / full)
    assert not written.field("in.distance").nullable  # no definition levels to encode
    table = read_capture(store, "flights")
    assert all(field.nullable for field in table.schema)
    assert table.column("in.distance").to_pylist() == [1.0, None]


def test_dictionary_text_reads_back_as_plain_text_beside_older_files(
    store: FsspecByteStore,
) -> None:
    plain = _rows(["a"], [1000], distance=[1.0])
    encoded = _rows(["b", "c"], [2000, 2001], distance=[2.0, 3.0])
    for name in ("request_id", "model", "route"):
        index = encoded.schema.get_field_index(name)
        encoded = encoded.set_column(index, name, encoded.column(name).dictionary_encode())
    write_capture(store, "flights", plain)
    write_capture(store, "flights", encoded)
    table = read_capture(store, "flights")
    assert table.schema.field("request_id").type == pa.string()
    assert table.column("request_id").to_pylist() == ["a", "b", "c"]
    assert table.column("route").to_pylist() == ["primary"] * 3
