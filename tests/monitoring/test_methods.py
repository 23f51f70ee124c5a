import math
import warnings

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from conveyor.monitoring import methods
from conveyor.monitoring.samples import CategoricalSample, categorical_sample, numeric_sample
from conveyor.profiling.sketches import QuantileSketch
from conveyor.profiling.tables import Column

TOL = {"rel": 1e-9, "abs": 1e-9}


def num(values, integer=False):
    return numeric_sample(
        Column("x", "numeric", numbers=np.asarray(values, float), integer=integer)
    )


def cat(values):
    return categorical_sample(Column("x", "categorical", strings=pa.chunked_array([values])))


samples = st.lists(
    st.one_of(
        st.integers(-5, 5).map(float),  # plenty of ties
        st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=150,
)


# --- Kolmogorov-Smirnov ---------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(samples, samples)
def test_ks_matches_scipy_auto_on_small_samples(a, b):
    with warnings.catch_warnings():
        # scipy warns where its exact sum fails and it falls back; conveyor follows it there too
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = stats.ks_2samp(a, b)  # method="auto": exact at these sizes
    got = methods.ks(num(a), num(b))
    assert got.statistic == pytest.approx(expected.statistic, **TOL)
    assert got.p_value == pytest.approx(expected.pvalue, **TOL)
    assert got.error_bound == 0.0


@pytest.mark.parametrize(
    ("n1", "n2", "shift"),
    [(1, 1, 0.0), (7, 7, 0.5), (500, 500, 0.1), (1000, 1000, 0.0), (137, 999, 0.2)],
)
def test_ks_exact_p_value_matches_scipy_exact(n1, n2, shift):
    rng = np.random.default_rng(n1 + n2)
    a, b = rng.normal(size=n1), rng.normal(shift, size=n2)
    expected = stats.ks_2samp(a, b, method="exact")
    got = methods.ks(num(a), num(b))
    assert (got.statistic, got.p_value) == pytest.approx(
        (expected.statistic, expected.pvalue), **TOL
    )


def test_ks_exact_at_the_largest_auto_size():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=10_000), rng.normal(0.03, size=9_001)
    expected = stats.ks_2samp(a, b)
    got = methods.ks(num(a), num(b))
    assert got.p_value == pytest.approx(expected.pvalue, **TOL)


@pytest.mark.parametrize("shift", [0.0, 0.01, 0.03, 0.3])
def test_ks_asymptotic_matches_scipy_for_large_samples(shift):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=30_000), np.round(rng.normal(shift, size=12_345), 3)
    for method in ("auto", "asymp"):
        expected = stats.ks_2samp(a, b, method=method)
        got = methods.ks(num(a), num(b))
        assert got.statistic == pytest.approx(expected.statistic, **TOL)
        assert got.p_value == pytest.approx(expected.pvalue, **TOL)


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.15, 0.3])
def test_ks_exact_for_strong_drift_at_ten_thousand(shift):
    rng = np.random.default_rng(5)
    a, b = rng.uniform(size=10_000), rng.uniform(shift, 1 + shift, 10_000)
    expected = stats.ks_2samp(a, b)
    got = methods.ks(num(a), num(b))
    assert (got.statistic, got.p_value) == pytest.approx(
        (expected.statistic, expected.pvalue), **TOL
    )


def test_ks_from_value_counts_is_exact():
    values, counts = np.array([1.0, 2.0, 3.0]), np.array([5, 1, 7])
    weighted = type(num([0]))(values=values, weights=counts, count=13, minimum=1.0, maximum=3.0)
    raw = np.repeat(values, counts)
    expected = stats.ks_2samp(raw, [2.0, 3.0, 3.0])
    got = methods.ks(weighted, num([2.0, 3.0, 3.0]))
    assert (got.statistic, got.p_value, got.error_bound) == (
        expected.statistic,
        expected.pvalue,
        0.0,
    )


# --- Wasserstein ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(samples, samples)
def test_wasserstein_matches_scipy_normalised_by_reference_std(a, b):
    norm = max(np.std(a), 0.001)
    expected = stats.wasserstein_distance(a, b) / norm
    got = methods.wasserstein(num(a), num(b))
    assert got.statistic == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_wasserstein_on_a_million_values_matches_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(size=1_000_000), rng.lognormal(0.05, size=700_000)
    expected = stats.wasserstein_distance(a, b) / np.std(a)
    assert methods.wasserstein(num(a), num(b)).statistic == pytest.approx(expected, rel=1e-9)


tied = st.lists(st.integers(-4, 4).map(float), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(st.one_of(samples, tied), st.one_of(samples, tied), st.integers(1, 5))
def test_the_merge_in_small_ranges_gives_scipys_ks_and_area(a, b, block):
    # Ranges of a few values each, with ties inside and at their edges.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(methods, "_BLOCK", block)
        d, _ = methods._ks_and_area(num(a), num(b), ks=True)
        _, area = methods._ks_and_area(num(a), num(b), ks=False)
    with warnings.catch_warnings():  # scipy's p-value warns on tiny samples; only D is used
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = stats.ks_2samp(a, b, method="asymp").statistic
    assert d == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert area == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-12)


def test_a_run_of_equal_values_longer_than_a_range_is_never_split(monkeypatch):
    monkeypatch.setattr(methods, "_BLOCK", 100)
    rng = np.random.default_rng(8)
    a = np.concatenate([np.zeros(1_000), rng.normal(size=500)])
    b = np.concatenate([np.zeros(300), rng.normal(0.2, size=900)])
    d, _ = methods._ks_and_area(num(a), num(b), ks=True)
    _, area = methods._ks_and_area(num(a), num(b), ks=False)
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, rel=1e-12)
    assert area == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


# --- statistics on counts ----------------------------------------------------------------


categories = st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=300)


def _counts(a, b):
    keys = sorted(set(a) | set(b))
    return (
        np.array([a.count(k) for k in keys], float),
        np.array([b.count(k) for k in keys], float),
    )


@settings(max_examples=150, deadline=None)
@given(categories, categories)
def test_chisquare_matches_scipy(a, b):
    ref, cur = _counts(a, b)
    got = methods.chisquare(methods.aligned_counts(cat(a), cat(b)))
    if len(ref) < 2:
        assert (got.statistic, got.p_value) == (0.0, 1.0)
        return
    expected = ref * len(b) / len(a)
    if np.any(expected == 0):  # a category the reference never had
        assert got.statistic == math.inf
        assert got.p_value == 0.0
        return
    want = stats.chisquare(cur, expected)
    assert got.statistic == pytest.approx(want.statistic, **TOL)
    assert got.p_value == pytest.approx(want.pvalue, **TOL)


@settings(max_examples=150, deadline=None)
@given(categories, categories)
def test_jensenshannon_matches_scipy(a, b):
    ref, cur = _counts(a, b)
    want = distance.jensenshannon(ref / len(a), cur / len(b))
    got = methods.jensenshannon(methods.aligned_counts(cat(a), cat(b)))
    assert got.statistic == pytest.approx(want, rel=1e-9, abs=1e-12)


def _floor(shares):
    smallest = shares[shares > 0].min()
    return np.where(shares == 0, smallest / 1e6 if smallest <= 1e-4 else 1e-4, shares)


@settings(max_examples=100, deadline=None)
@given(categories, categories)
def test_psi_matches_its_formula_with_evidentlys_floor(a, b):
    ref, cur = _counts(a, b)
    p, q = _floor(ref / len(a)), _floor(cur / len(b))
    want = float(np.sum((p - q) * np.log(p / q)))
    got = methods.psi(methods.aligned_counts(cat(a), cat(b)))
    assert got.statistic == pytest.approx(want, rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from("xy"), min_size=1, max_size=200),
    st.lists(st.sampled_from("xy"), min_size=1, max_size=200),
)
def test_ztest_matches_the_two_proportion_formula(a, b):
    got = methods.ztest(methods.aligned_counts(cat(a), cat(b)))
    if set(a) == set(b) and len(set(a)) == 1:
        assert got.p_value == 1.0
        return
    p1, p2 = a.count("y") / len(a), b.count("y") / len(b)
    pooled = (p1 * len(a) + p2 * len(b)) / (len(a) + len(b))
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
    assert got.p_value == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), **TOL)


def test_new_categories_are_listed_most_frequent_first():
    assert methods.new_categories(cat(["a", "b"]), cat(["c", "d", "d", "a"])) == ["d", "c"]


# --- numeric binning ------------------------------------------------------------------


@pytest.mark.parametrize("integer", [False, True])
def test_sturges_bins_match_numpy(integer):
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 40, 3000), rng.integers(5, 45, 2000)
    if not integer:
        a, b = a * 0.37, b * 0.37 + 0.1
    both = np.concatenate([a, b])
    want = np.histogram_bin_edges(both, bins="sturges")
    edges = methods.sturges_edges(num(a, integer), num(b, integer))
    np.testing.assert_allclose(edges, want, rtol=0, atol=0)
    counts = methods.binned_counts(num(a, integer), num(b, integer))
    np.testing.assert_array_equal(counts.reference, np.histogram(a, want)[0])
    np.testing.assert_array_equal(counts.current, np.histogram(b, want)[0])


def test_few_values_are_counted_per_value():
    counts = methods.binned_counts(num([1, 1, 2, 3]), num([2, 4]))
    assert counts.keys == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_array_equal(counts.reference, [2, 1, 1, 0])
    np.testing.assert_array_equal(counts.current, [0, 1, 0, 1])


# --- weighted samples (sketches) ---------------------------------------------------------


def _sketched(values):
    sketch = QuantileSketch(256)
    for part in np.array_split(values, 7):
        sketch.add_sorted(np.sort(part))
    items, weights = sketch.weighted()
    exact = num(values)
    return type(exact)(
        values=items,
        weights=weights,
        count=exact.count,
        minimum=exact.minimum,
        maximum=exact.maximum,
        std=exact.std,
        rank_error=sketch.rank_error,
    )


def test_sketched_statistics_stay_within_their_bounds():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=40_000), rng.normal(0.1, 1.2, 30_000)
    exact_ks, exact_w = methods.ks(num(a), num(b)), methods.wasserstein(num(a), num(b))
    sa, sb = _sketched(a), _sketched(b)
    ks, w = methods.ks(sa, sb), methods.wasserstein(sa, sb)
    assert 0 < ks.error_bound < 0.1
    assert abs(ks.statistic - exact_ks.statistic) <= ks.error_bound
    assert abs(w.statistic - exact_w.statistic) <= w.error_bound


def test_aligned_counts_keep_reference_order_then_new_keys():
    counts = methods.aligned_counts(cat(["b", "a", "b"]), cat(["c", "a"]))
    assert counts.keys[:2] == ["b", "a"]
    assert counts.keys[2] == "c"
    np.testing.assert_array_equal(counts.reference, [2, 1, 0])
    np.testing.assert_array_equal(counts.current, [0, 1, 1])
    assert isinstance(cat(["a"]), CategoricalSample)
