"""`CaptureWriter`: buffered rows written to the capture log by count, by time and on close."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor.errors import ValidationError
from conveyor.serving.capture import _BATCH, _INPUTS, CaptureEntry, CaptureWriter
from conveyor.serving.model import Batch
from conveyor.stores.backends import open_artifact_store
from conveyor.stores.capture import read_capture


@pytest.fixture
def store(tmp_path):
    return open_artifact_store(str(tmp_path / "artifacts")).byte_store


def _entry(
    rid: str, n: int = 2, version: int = 1, route: str = "primary", ts: int = 1_700_000_000_000
) -> CaptureEntry:
    inputs = pd.DataFrame({"x": np.arange(n, dtype=float), "size": ["a"] * n})
    return CaptureEntry(
        "cancer",
        version,
        route,
        rid,
        ts,
        1.5,
        200,
        inputs,
        (),
        np.arange(n) % 2,
        np.tile([[0.25, 0.75]], (n, 1)),
    )


def _wait_for_rows(store, n: int, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table = read_capture(store, "cancer")
        if table.num_rows >= n:
            return table
        time.sleep(0.02)
    return read_capture(store, "cancer")


def test_rows_are_written_when_the_buffer_reaches_flush_rows(store):
    writer = CaptureWriter(store, window_s=60, flush_rows=4, max_rows=100)
    writer.start()
    try:
        writer.add(_entry("a", 2))
        writer.add(_entry("b", 2, ts=1_700_000_000_001))
        table = _wait_for_rows(store, 4)
    finally:
        writer.close()
    assert table.num_rows == 4
    assert table.column("request_id").to_pylist() == ["a", "a", "b", "b"]
    assert table.column("row").to_pylist() == [0, 1, 0, 1]
    assert table.column("in.x").to_pylist() == [0.0, 1.0, 0.0, 1.0]
    assert table.column("in.size").to_pylist() == ["a"] * 4
    assert table.column("out.prediction").to_pylist() == [0, 1, 0, 1]
    assert table.column("out.probability").to_pylist() == [0.75] * 4
    assert set(table.column("route").to_pylist()) == {"primary"}
    assert table.column("status").to_pylist() == [200] * 4


def test_many_one_row_requests_are_written_before_flush_rows_and_the_window(store):
    from conveyor.serving.capture import _FLUSH_ENTRIES

    writer = CaptureWriter(store, window_s=600, flush_rows=10 * _FLUSH_ENTRIES)
    writer.start()
    try:
        x = np.array([[1.0, 2.0]])
        for i in range(_FLUSH_ENTRIES):
            writer.add(
                CaptureEntry(
                    "cancer", 1, "primary", f"r{i}", 10 + i, 1.0, 200, x, ("a", "b"),
                    np.array([1]), None,
                )
            )  # fmt: skip
        # The writer is woken by the entry count (the rows are a tenth of flush_rows)
        # and must write then: left alone, every later request would wake it again.
        table = _wait_for_rows(store, _FLUSH_ENTRIES, timeout=20)
    finally:
        writer.close()
    assert table.num_rows == _FLUSH_ENTRIES
    assert writer.written_files == 1


def test_rows_are_written_when_the_window_ends(store):
    writer = CaptureWriter(store, window_s=0.2, flush_rows=1000, max_rows=1000)
    writer.start()
    try:
        writer.add(_entry("late", 1))
        table = _wait_for_rows(store, 1, timeout=3)
        assert table.num_rows == 1
    finally:
        writer.close()


def test_close_flushes_what_is_buffered(store):
    writer = CaptureWriter(store, window_s=60, flush_rows=1000, max_rows=1000)
    writer.start()
    writer.add(_entry("x", 3))
    writer.add(_entry("y", 1, version=2, route="canary"))
    assert read_capture(store, "cancer").num_rows == 0
    writer.close()
    table = read_capture(store, "cancer")
    assert table.num_rows == 4
    assert sorted(set(table.column("version").to_pylist())) == [1, 2]
    assert writer.written_files == 2  # one file per version
    assert writer.add(_entry("after", 1)) is False  # closed: dropped, counted
    assert writer.dropped_rows == 1


def test_a_full_buffer_drops_and_counts_rows_without_blocking(store):
    writer = CaptureWriter(store, window_s=60, flush_rows=5, max_rows=5)  # no thread
    assert writer.add(_entry("a", 3))
    started = time.perf_counter()
    assert writer.add(_entry("b", 3)) is False
    assert time.perf_counter() - started < 0.01
    assert writer.dropped_rows == 3
    assert writer.buffered_rows == 3
    text = "\n".join(writer.render_metrics())
    assert "conveyor_capture_dropped_rows_total 3" in text
    assert "conveyor_capture_buffered_rows 3" in text
    writer.close()
    assert read_capture(store, "cancer").num_rows == 3


def test_sampling_takes_about_the_given_share():
    writer = CaptureWriter(
        open_artifact_store("memory://capture-sample").byte_store, sample=0.25, seed=7
    )
    share = sum(writer.sampled() for _ in range(4000)) / 4000
    assert 0.2 < share < 0.3
    never = CaptureWriter(writer.store, sample=0.0)
    assert not any(never.sampled() for _ in range(100))


def test_array_inputs_and_refused_requests(store):
    writer = CaptureWriter(store)
    arr = CaptureEntry(
        "cancer",
        1,
        "primary",
        "arr",
        5,
        1.0,
        200,
        np.array([[1.0, 2.0]]),
        ("p", "q"),
        np.array([1]),
        None,
    )
    refused = CaptureEntry("cancer", 1, "primary", "bad", 6, 0.5, 422)
    writer.add(arr)
    writer.add(refused)
    writer.close()
    table = read_capture(store, "cancer")
    rows = {r["request_id"]: r for r in table.to_pylist()}
    assert rows["arr"]["in.p"] == 1.0
    assert rows["arr"]["in.q"] == 2.0
    assert rows["bad"]["status"] == 422
    assert rows["bad"]["in.p"] is None


def test_record_buffers_plain_tuples_the_collector_lets_go(store):
    import gc

    writer = CaptureWriter(store)
    x = np.array([[1.0, 2.0]])
    assert writer.record("cancer", 1, "primary", "r1", 5, 1.0, 200, x, ("p", "q"), np.array([1]))
    assert writer.record("cancer", 1, "primary", "r2", 6, 0.5, 422)  # refused: no rows
    assert writer.buffered_rows == 2
    gc.collect()
    assert not any(gc.is_tracked(entry) for entry in writer._entries)
    writer.close()
    rows = {r["request_id"]: r for r in read_capture(store, "cancer").to_pylist()}
    assert (rows["r1"]["in.p"], rows["r1"]["in.q"], rows["r1"]["out.prediction"]) == (1.0, 2.0, 1)
    assert (rows["r2"]["status"], rows["r2"]["in.p"]) == (422, None)
    assert writer.captured_rows == writer.written_rows == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names in /proc")
def test_the_writer_thread_has_its_name_in_the_kernel(store):
    writer = CaptureWriter(store)
    writer.start()
    try:
        deadline = time.monotonic() + 5
        names: list[str] = []
        while time.monotonic() < deadline and "conveyor-captur" not in names:
            names = []
            for task in Path(f"/proc/{os.getpid()}/task").iterdir():
                try:
                    names.append((task / "comm").read_text().strip())
                except OSError:  # a thread that ended meanwhile
                    continue
            time.sleep(0.01)
    finally:
        writer.close()
    assert "conveyor-captur" in names  # the kernel keeps 15 bytes


def test_arrays_of_different_widths_are_written_each_with_its_own_columns(store):
    writer = CaptureWriter(store)
    for rid, row in (("two", [[1.0, 2.0]]), ("three", [[3.0, 4.0, 5.0]])):
        writer.record("cancer", 1, "primary", rid, 5, 1.0, 200, np.array(row), (), np.array([0]))
    writer.close()
    rows = {r["request_id"]: r for r in read_capture(store, "cancer").to_pylist()}
    assert [rows["two"][f"in.{i}"] for i in range(3)] == [1.0, 2.0, None]
    assert [rows["three"][f"in.{i}"] for i in range(3)] == [3.0, 4.0, 5.0]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"sample": 1.5}, "capture_sample"),
        ({"window_s": 0}, "capture_window"),
        ({"flush_rows": 0}, "capture_flush_rows"),
        ({"flush_rows": 10, "max_rows": 5}, "capture_max_rows"),
    ],
)
def test_bad_options_name_the_option(store, options, field):
    with pytest.raises(ValidationError) as info:
        CaptureWriter(store, **options)
    assert info.value.field == field


def test_numeric_requests_are_stacked_without_a_frame_each(store):
    writer = CaptureWriter(store)
    for i in range(3):
        frame = pd.DataFrame({"a": [float(i), float(i) + 0.5], "b": [1.0, 2.0]})
        writer.add(
            CaptureEntry(
                "cancer", 1, "primary", f"f{i}", 10 + i, 1.0, 200, frame, (), np.array([0, 1]), None
            )
        )
    for i in range(2):
        writer.add(
            CaptureEntry(
                "cancer",
                2,
                "canary",
                f"a{i}",
                20 + i,
                1.0,
                200,
                np.array([[i, 7]], dtype=np.int64),
                ("a", "b"),
                np.array([1]),
                None,
            )
        )
    writer.close()
    rows = read_capture(store, "cancer").to_pylist()
    assert [r["in.a"] for r in rows] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 0, 1]
    assert [r["in.b"] for r in rows][-2:] == [7, 7]
    assert [r["route"] for r in rows][-2:] == ["canary", "canary"]


def test_flushes_reuse_one_input_buffer_without_mixing_their_rows(store):
    writer = CaptureWriter(store, window_s=60)
    expected = []
    for flush, rows in enumerate((3, 1, 5)):
        for r in range(rows):
            values = np.array([[flush * 10.0 + r, -1.0 * r]])
            expected.append(values[0].tolist())
            writer.add(
                CaptureEntry(
                    "cancer", 1, "primary", f"{flush}-{r}", 100 * flush + r, 1.0, 200,
                    values, ("a", "b"), np.array([r % 2]), None,
                )
            )  # fmt: skip
        assert len(writer.flush()) == 1
    rows = read_capture(store, "cancer").to_pylist()
    got = {r["request_id"]: [r["in.a"], r["in.b"]] for r in rows}
    assert [got[k] for k in sorted(got, key=lambda k: tuple(map(int, k.split("-"))))] == expected


def test_nan_inputs_are_written_as_nulls_only_where_they_are(store):
    writer = CaptureWriter(store)
    rows = [[1.0, np.nan, 3.0], [4.0, 5.0, np.inf], [7.0, 8.0, -np.inf]]
    for i, row in enumerate(rows):
        writer.add(
            CaptureEntry(
                "cancer", 1, "primary", f"r{i}", 10 + i, 1.0, 200,
                np.array([row]), ("a", "b", "c"), np.array([0]), None,
            )
        )  # fmt: skip
    writer.close()
    table = read_capture(store, "cancer")
    assert table.column("in.a").to_pylist() == [1.0, 4.0, 7.0]
    assert table.column("in.b").to_pylist() == [None, 5.0, 8.0]
    # Both infinities sum to NaN: the column is checked value by value, and kept.
    assert table.column("in.c").to_pylist() == [3.0, np.inf, -np.inf]


def test_text_columns_read_back_as_plain_strings(store):
    import pyarrow as pa

    writer = CaptureWriter(store)
    for i, route in enumerate(("primary", "canary", "primary")):
        writer.add(_entry(f"r{i}", n=2, route=route, ts=1_700_000_000_000 + i))
    writer.close()
    table = read_capture(store, "cancer")
    for name in ("request_id", "model", "route"):
        assert table.schema.field(name).type == pa.string()
    assert table.column("route").to_pylist() == ["primary"] * 2 + ["canary"] * 2 + ["primary"] * 2
    assert table.column("model").to_pylist() == ["cancer"] * 6


def test_arrays_are_wrapped_for_arrow_as_pyarrow_would_convert_them():
    import pyarrow as pa

    from conveyor.serving.capture import _numeric, _strings

    floats = np.array([1.5, np.nan, -2.0])
    assert _numeric(floats, with_nan=True).to_pylist() == [1.5, None, -2.0]
    assert _numeric(floats, with_nan=True).null_count == 1
    assert np.isnan(_numeric(floats).to_pylist()[1])  # NaN kept where nulls are not asked for
    strided = np.arange(12, dtype=np.int16).reshape(3, 4)[:, 1]
    assert _numeric(strided).type == pa.int16()
    assert _numeric(strided).to_pylist() == [1, 5, 9]
    big_endian = np.array([1.0, 2.0], dtype=">f8")
    assert _numeric(big_endian).to_pylist() == [1.0, 2.0]
    labels = np.array(["yes", "no"], dtype=object)  # a classifier with text labels
    assert _numeric(labels).to_pylist() == ["yes", "no"]
    text = ["r-1", "", "é≈", "r-1"]
    assert _strings(text).to_pylist() == text
    assert _numeric(np.array([True, False])).to_pylist() == [True, False]


def test_a_lone_surrogate_in_text_is_left_to_arrow_to_refuse():
    from conveyor.serving.capture import _strings

    with pytest.raises(Exception, match="surrogate"):
        _strings(["a\udc80"])


def test_large_requests_are_stacked_row_by_row_as_numpy_would_stack_them():
    from conveyor.serving.capture import _Scratch, _stack

    rng = np.random.default_rng(1)
    scratch = _Scratch()
    big = [rng.normal(size=(n, 20)) for n in (100, 3, 40)]  # 2,000 values: the gather path
    for parts in (big, [p.astype(np.int32) for p in big], [rng.normal(size=(2, 3))] * 4):
        stacked = _stack(parts, scratch)
        assert stacked.flags.f_contiguous
        np.testing.assert_array_equal(stacked, np.concatenate(parts))
    strided = [rng.normal(size=(100, 40))[:, ::2], rng.normal(size=(30, 20))]  # not contiguous
    np.testing.assert_array_equal(_stack(strided, scratch), np.concatenate(strided))
    again = _stack(big[:1], scratch)  # a smaller flush over the same buffers
    np.testing.assert_array_equal(again, big[0])


def test_hundred_row_requests_reach_the_log_row_for_row(store):
    writer = CaptureWriter(store)
    rng = np.random.default_rng(2)
    sent = [rng.normal(size=(100, 3)) for _ in range(4)]
    for i, values in enumerate(sent):
        writer.add(
            CaptureEntry(
                "cancer", 1, "primary", f"r{i}", 10 + i, 1.0, 200,
                values, ("a", "b", "c"), np.zeros(100, dtype=np.int64), None,
            )
        )  # fmt: skip
    writer.close()
    table = read_capture(store, "cancer")
    got = np.column_stack([table.column(f"in.{c}").to_numpy() for c in "abc"])
    np.testing.assert_array_equal(got, np.concatenate(sent))
    assert table.column("row").to_pylist() == list(range(100)) * 4


def _batch(rows: int, width: int = 3, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    proba = rng.random((rows, 2)).astype(np.float32)
    return Batch(rng.normal(size=(rows, width)), np.arange(rows) % 2, proba)


def _from_batch(
    writer: CaptureWriter, rid: str, batch: Batch, start: int, rows: int, version: int = 1
) -> None:
    end = start + rows
    writer.record(
        "cancer", version, "primary", rid, 10, 1.0, 200,
        batch.rows[start:end], ("a", "b", "c"), batch.predict[start:end],
        None if batch.proba is None else batch.proba[start:end], batch, start,
    )  # fmt: skip


def _written(store) -> dict[str, list[dict]]:
    by_id: dict[str, list[dict]] = {}
    for row in read_capture(store, "cancer").to_pylist():
        by_id.setdefault(row["request_id"], []).append(row)
    return by_id


def _check(by_id, rid: str, batch: Batch, start: int, rows: int) -> None:
    got = by_id[rid]
    assert [r["row"] for r in got] == list(range(rows))
    values = [[r[f"in.{c}"] for c in "abc"] for r in got]
    np.testing.assert_array_equal(values, batch.rows[start : start + rows])
    assert [r["out.prediction"] for r in got] == batch.predict[start : start + rows].tolist()
    assert batch.proba is not None
    expected = batch.proba[start : start + rows, 1].astype(np.float64)
    np.testing.assert_array_equal([r["out.probability"] for r in got], expected)


def _check_spans(store, spans: list[tuple[str, Batch, int, int]]) -> None:
    """Each request's rows in the log are its span of its batch, and nothing else is."""
    by_id = _written(store)
    for rid, batch, start, rows in spans:
        _check(by_id, rid, batch, start, rows)
    assert read_capture(store, "cancer").num_rows == sum(rows for *_, rows in spans)


def test_requests_of_a_batch_are_buffered_as_the_batch_and_written_row_for_row(store):
    writer = CaptureWriter(store)
    first, second = _batch(6, seed=1), _batch(2, seed=2)
    spans = [("r0", first, 0, 2), ("r1", first, 2, 1), ("r2", first, 3, 3), ("r3", second, 0, 2)]
    for rid, batch, start, rows in spans:
        _from_batch(writer, rid, batch, start, rows)
    # Each buffered request holds its batch, not arrays of its own.
    assert [entry[_BATCH] for entry in writer._entries] == [first, first, first, second]
    assert {entry[_INPUTS] is None for entry in writer._entries} == {True}
    writer.close()
    _check_spans(store, spans)


def test_requests_of_batches_out_of_order_or_missing_get_their_own_rows(store):
    writer = CaptureWriter(store)
    first, second = _batch(5, seed=3), _batch(4, seed=4)
    # Answers recorded out of order, one request of the first batch never recorded
    # (say, its client went away), and a batch split by a flush.
    spans = [("r2", first, 3, 2), ("s0", second, 0, 1), ("r0", first, 0, 2), ("s1", second, 1, 3)]
    for rid, batch, start, rows in spans[:3]:
        _from_batch(writer, rid, batch, start, rows)
    writer.flush()
    _from_batch(writer, *spans[3])
    writer.close()
    _check_spans(store, spans)


def test_a_flush_with_requests_from_batches_and_with_their_own_rows(store):
    writer = CaptureWriter(store)
    batch = _batch(3, seed=5)
    _from_batch(writer, "batched", batch, 0, 3)
    own = _batch(2, seed=6)
    writer.record(
        "cancer", 1, "primary", "own", 11, 1.0, 200,
        own.rows, ("a", "b", "c"), own.predict, own.proba,
    )  # fmt: skip
    writer.record("cancer", 1, "primary", "refused", 12, 1.0, 422)
    writer.close()
    by_id = _written(store)
    _check(by_id, "batched", batch, 0, 3)
    _check(by_id, "own", own, 0, 2)
    assert by_id["refused"][0]["status"] == 422
    assert by_id["refused"][0]["in.a"] is None


def test_a_sampled_capture_keeps_each_request_s_own_rows_not_its_batch(store):
    writer = CaptureWriter(store, sample=0.5, seed=1)
    batch = _batch(64, seed=7)
    _from_batch(writer, "one", batch, 10, 1)
    # The batch's other 63 rows were not sampled: holding the batch would keep them.
    assert writer._entries[0][_BATCH] is None
    assert writer._entries[0][_INPUTS].shape == (1, 3)
    writer.close()
    _check(_written(store), "one", batch, 10, 1)


def test_batches_of_different_widths_are_written_each_with_its_own_columns(store):
    writer = CaptureWriter(store)
    narrow, wide = _batch(2, width=3, seed=8), _batch(1, width=4, seed=9)
    _from_batch(writer, "narrow", narrow, 0, 2)
    writer.record(
        "cancer", 1, "primary", "wide", 12, 1.0, 200,
        wide.rows, ("a", "b", "c", "d"), wide.predict, wide.proba, wide, 0,
    )  # fmt: skip
    writer.close()
    by_id = _written(store)
    _check(by_id, "narrow", narrow, 0, 2)
    assert by_id["narrow"][0]["in.d"] is None
    assert by_id["wide"][0]["in.d"] == wide.rows[0, 3]
