import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.profiling.sketches import (
    FrequencySketch,
    HyperLogLog,
    Moments,
    QuantileSketch,
    decode_array,
    encode_array,
    hash_floats,
    hash_strings,
)


def _true_cdf(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(values), points, "right") / values.size


def _sketch(values: np.ndarray, chunk: int, k: int = 256) -> QuantileSketch:
    sketch = QuantileSketch(k)
    for start in range(0, values.size, chunk):
        sketch.add_sorted(np.sort(values[start : start + chunk]))
    return sketch


# --- moments ------------------------------------------------------------------


def test_moments_merge_like_one_pass():
    rng = np.random.default_rng(0)
    a, b = rng.normal(5, 2, 1000), rng.exponential(3, 333)
    left, right, whole = Moments(), Moments(), Moments()
    left.add_sorted(np.sort(a))
    right.add_sorted(np.sort(b))
    whole.add_sorted(np.sort(np.concatenate([a, b])))
    merged = left.merge(right)
    assert merged.count == whole.count == 1333
    assert (merged.minimum, merged.maximum) == (whole.minimum, whole.maximum)
    both = np.concatenate([a, b])
    assert merged.mean == pytest.approx(both.mean(), rel=1e-12)
    assert merged.std == pytest.approx(both.std(), rel=1e-12)


def test_empty_moments_are_nan_and_round_trip():
    empty = Moments()
    assert math.isnan(empty.std)
    assert Moments.from_dict(empty.to_dict()) == empty
    one = Moments()
    one.add_sorted(np.array([1.0, 2.0]))
    assert Moments.from_dict(one.to_dict()) == one
    assert one.merge(empty) == one


# --- quantiles ----------------------------------------------------------------


def test_a_small_sketch_is_exact():
    values = np.random.default_rng(1).normal(size=200)
    sketch = _sketch(values, chunk=50)
    assert sketch.is_exact
    assert sketch.rank_error == 0
    items, weights = sketch.weighted()
    np.testing.assert_array_equal(items, np.sort(values))
    assert set(weights.tolist()) == {1}


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 20_000),
    chunk=st.integers(1, 7000),
    k=st.sampled_from([8, 64, 512]),
    seed=st.integers(0, 2**32 - 1),
)
def test_cdf_error_stays_within_the_tracked_bound(n, chunk, k, seed):
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=n), 2)  # ties included
    sketch = _sketch(values, chunk, k)
    points = np.concatenate([values, np.linspace(-5, 5, 101)])
    error = np.abs(sketch.cdf(points) - _true_cdf(values, points)).max()
    assert error <= sketch.epsilon + 1e-12
    assert sketch.count == n
    assert int(sketch.weighted()[1].sum()) == n


def test_merge_adds_bounds_and_keeps_them():
    rng = np.random.default_rng(2)
    parts = [rng.normal(i, 1, 30_000) for i in range(4)]
    sketches = [_sketch(p, 10_000) for p in parts]
    merged = sketches[0].merge(sketches[1]).merge(sketches[2].merge(sketches[3]))
    everything = np.concatenate(parts)
    points = np.linspace(-4, 8, 500)
    assert merged.count == everything.size
    assert merged.rank_error >= sum(s.rank_error for s in sketches)
    assert np.abs(merged.cdf(points) - _true_cdf(everything, points)).max() <= merged.epsilon
    # bounded size: a few levels of fewer than k items
    assert merged.weighted()[0].size < 256 * 12


def test_quantiles_are_within_epsilon_in_rank():
    values = np.random.default_rng(3).lognormal(size=100_000)
    sketch = _sketch(values, 25_000, k=1024)
    qs = np.array([0.01, 0.25, 0.5, 0.9, 0.999])
    ranks = _true_cdf(values, sketch.quantile(qs))
    assert np.all(np.abs(ranks - qs) <= sketch.epsilon + 1e-5)


def test_sketches_are_deterministic_and_round_trip():
    values = np.random.default_rng(4).normal(size=50_000)
    one, two = _sketch(values, 7000), _sketch(values, 7000)
    assert one.to_dict() == two.to_dict()
    back = QuantileSketch.from_dict(one.to_dict())
    np.testing.assert_array_equal(back.weighted()[0], one.weighted()[0])
    assert (back.count, back.rank_error, back.k) == (one.count, one.rank_error, one.k)


def test_sketch_does_not_keep_the_callers_chunk():
    chunk = np.sort(np.random.default_rng(5).normal(size=1001))
    sketch = QuantileSketch(8)
    sketch.add_sorted(chunk)
    items, _ = sketch.weighted()
    assert all(not np.shares_memory(level, chunk) for level in sketch._levels)
    assert items.size < 40


def test_k_must_be_reasonable():
    with pytest.raises(ValueError, match="at least 8"):
        QuantileSketch(4)


# --- distinct -----------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 1000, 50_000, 400_000])
def test_hyperloglog_estimates_within_four_standard_errors(n):
    hll = HyperLogLog()
    values = np.arange(n, dtype=np.float64) * 1.5
    hll.add_hashes(hash_floats(values))
    hll.add_hashes(hash_floats(values[: n // 2]))  # duplicates change nothing
    assert hll.estimate() == pytest.approx(n, rel=4 * 1.04 / 128)


def test_hyperloglog_merge_is_the_union_and_round_trips():
    a, b, both = HyperLogLog(), HyperLogLog(), HyperLogLog()
    left, right = np.arange(0, 6000.0), np.arange(3000, 9000.0)
    a.add_hashes(hash_floats(left))
    b.add_hashes(hash_floats(right))
    both.add_hashes(hash_floats(np.concatenate([left, right])))
    np.testing.assert_array_equal(a.merge(b).registers, both.registers)
    np.testing.assert_array_equal(HyperLogLog.from_dict(a.to_dict()).registers, a.registers)


def test_hashes_are_stable_and_treat_minus_zero_as_zero():
    assert hash_floats(np.array([0.0]))[0] == hash_floats(np.array([-0.0]))[0]
    assert hash_floats(np.array([1.0]))[0] != hash_floats(np.array([2.0]))[0]
    first = hash_strings(pa.array(["a", "b"]))
    np.testing.assert_array_equal(first, hash_strings(pa.array(["a", "b"], pa.large_string())))
    assert first[0] != first[1]


# --- frequent values ----------------------------------------------------------


def _frequencies(capacity: int, counts: dict[str, int], **kwargs) -> FrequencySketch:
    sketch = FrequencySketch(capacity, **kwargs)
    sketch.add(pa.array(list(counts), pa.large_string()), np.array(list(counts.values())))
    return sketch


def test_frequencies_are_exact_within_capacity_and_merge():
    one = _frequencies(10, {"a": 3, "b": 1})
    two = _frequencies(10, {"b": 4, "c": 2})
    merged = one.merge(two)
    assert merged.exact
    assert merged.top(3) == [("b", 5), ("a", 3), ("c", 2)]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 60), min_size=1, max_size=3000),
    st.integers(1, 20),
    st.integers(1, 5),
)
def test_misra_gries_counts_are_low_by_at_most_the_error(stream, capacity, parts):
    true = {}
    for v in stream:
        true[str(v)] = true.get(str(v), 0) + 1
    sketches = []
    for chunk in np.array_split(np.array(stream), parts):
        values, counts = np.unique(chunk, return_counts=True)
        sketch = FrequencySketch(capacity)
        if values.size:
            sketch.add(pa.array([str(v) for v in values], pa.large_string()), counts)
        sketches.append(sketch)
    merged = sketches[0]
    for other in sketches[1:]:
        merged = merged.merge(other)
    kept = dict(merged.top(capacity))
    assert len(kept) <= capacity
    assert merged.error <= len(stream) / (capacity + 1)
    for value, count in true.items():
        assert kept.get(value, 0) <= count
        assert kept.get(value, 0) >= count - merged.error


def test_exact_only_table_gives_up_beyond_capacity():
    sketch = _frequencies(2, {"a": 1, "b": 1, "c": 1}, exact_only=True)
    assert sketch.overflowed
    assert not sketch.exact
    assert sketch.top(5) == []
    assert sketch.merge(_frequencies(2, {"a": 1}, exact_only=True)).overflowed


def test_frequencies_round_trip_strings_and_numbers():
    words = _frequencies(5, {"x": 2, "y": 1})
    back = FrequencySketch.from_dict(words.to_dict())
    assert back.top(5) == words.top(5)
    numbers = FrequencySketch(5, exact_only=True)
    numbers.add(pa.array([1.5, 2.5]), np.array([3, 4]))
    assert FrequencySketch.from_dict(numbers.to_dict()).top(5) == [(2.5, 4), (1.5, 3)]


def test_arrays_round_trip_through_text():
    for values in (np.arange(10, dtype=np.float64), np.arange(5, dtype=np.uint8)):
        np.testing.assert_array_equal(decode_array(encode_array(values), values.dtype), values)
