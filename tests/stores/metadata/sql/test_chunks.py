import math

from hypothesis import given
from hypothesis import strategies as st

from conveyor.core.entities import Metric
from conveyor.stores.metadata.sql.chunks import decode_history, encode_chunks, latest_of_chunks


def _blobs(chunk):
    return chunk["steps_blob"], chunk["values_blob"], chunk["timestamps_blob"]


def test_one_chunk_per_run_and_key():
    rows = [
        ("r1", "a", 1.0, 0, 10),
        ("r1", "b", 2.0, 0, 10),
        ("r1", "a", 3.0, 1, 11),
        ("r2", "a", 4.0, 0, 12),
    ]
    chunks = encode_chunks(rows)
    assert [(c["run_id"], c["key"], c["count"]) for c in chunks] == [
        ("r1", "a", 2),
        ("r1", "b", 1),
        ("r2", "a", 1),
    ]
    assert (chunks[0]["min_step"], chunks[0]["max_step"]) == (0, 1)


def test_latest_is_highest_step_then_latest_time_then_last_written():
    rows = [
        ("r", "a", 1.0, 5, 10),
        ("r", "a", 2.0, 3, 99),
        ("r", "a", 3.0, 5, 10),
        ("r", "a", 4.0, 5, 9),
    ]
    [latest] = latest_of_chunks(encode_chunks(rows))
    assert (latest["value"], latest["step"], latest["timestamp"]) == (3.0, 5, 10)


def test_nan_latest_is_stored_as_null():
    [latest] = latest_of_chunks(encode_chunks([("r", "a", math.nan, 0, 1)]))
    assert latest["value"] is None


def test_history_merges_chunks_in_step_order():
    first = encode_chunks([("r", "a", 1.0, 2, 1), ("r", "a", 2.0, 0, 1)])
    second = encode_chunks([("r", "a", 3.0, 1, 1), ("r", "a", 4.0, 2, 1)])
    history = decode_history("a", [_blobs(first[0]), _blobs(second[0])])
    assert history == [
        Metric("a", 2.0, 0, 1),
        Metric("a", 3.0, 1, 1),
        Metric("a", 1.0, 2, 1),
        Metric("a", 4.0, 2, 1),
    ]


def test_empty_history():
    assert decode_history("a", []) == []


points = st.lists(
    st.tuples(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**63), 2**63 - 1),
        st.integers(0, 2**62),
    ),
    min_size=1,
    max_size=50,
)


@given(points)
def test_round_trip_keeps_every_point(pts):
    rows = [("r", "k", v, s, t) for v, s, t in pts]
    history = decode_history("k", [_blobs(c) for c in encode_chunks(rows)])
    expected = sorted(
        (Metric("k", v, s, t) for v, s, t in pts), key=lambda m: (m.step, m.timestamp)
    )
    assert history == expected
