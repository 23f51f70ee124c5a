"""The drift statistics, computed the way scipy and Evidently compute them, from samples in O(n).

Numeric statistics walk the merged, sorted reference and current values once
(the reference is sorted once and may be reused): the two-sample
Kolmogorov-Smirnov statistic is the largest gap between the two empirical CDFs
at the ends of tie groups (as ``scipy.stats.ks_2samp``), and the Wasserstein
distance is the integral of that gap (as ``scipy.stats.wasserstein_distance``).
The KS p-value follows ``ks_2samp(method="auto")``: for samples of at most
10,000 values scipy's own exact routine runs on the sorted values (same numbers
to the last bit, fallbacks included); above that the statistic comes from the
O(n) walk and the p-value from Smirnov's ``kstwo.sf(d, round(n1*n2/(n1+n2)))``.

Categorical statistics work on counts aligned over the union of categories:
chi-squared is ``scipy.stats.chisquare(current, reference * n_cur / n_ref)``
(Evidently's form), the Z-test compares the share of the smallest category,
Jensen-Shannon is ``scipy.spatial.distance.jensenshannon`` of the shares and
PSI is Evidently's (zero shares replaced by a small floor). Numeric columns
with more than 20 distinct reference values are binned for JS and PSI with
``np.histogram_bin_edges(both, "sturges")``, as Evidently does.

For weighted samples (sketches) the same formulas run on the sketch's CDF and
an error bound is returned with each statistic.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from scipy import special

from conveyor.monitoring.samples import CategoricalSample, NumericSample

__all__ = [
    "Counts",
    "Stat",
    "aligned_counts",
    "binned_counts",
    "chisquare",
    "jensenshannon",
    "ks",
    "psi",
    "wasserstein",
    "ztest",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_EXACT_KS = 10_000  # scipy's "auto": exact when both samples are at most this big
WASSERSTEIN_MIN_STD = 0.001  # Evidently divides by max(std(reference), 0.001)
_BLOCK = 1 << 17  # values of each sample per merged range
_TINY_P = 1e-12


@dataclass(frozen=True)
class Stat:
    """A statistic, its p-value (None for distances) and a bound on its error (0.0: exact)."""

    statistic: float
    p_value: float | None = None
    error_bound: float | None = 0.0


@dataclass(frozen=True)
class Counts:
    """Reference and current counts over the same keys, and the sizes they are shares of."""

    keys: list[object]
    reference: FloatArray
    current: FloatArray
    reference_size: int
    current_size: int


# --- the merged CDF walk ------------------------------------------------------


def _curves(a: NumericSample, b: NumericSample) -> Iterator[tuple[FloatArray, FloatArray]]:
    """Blocks of (|F_a - F_b| after each merged value, gap to the next value; 0 at the end)."""
    if a.weights is None and b.weights is None:
        yield from _exact_curves(a.values, b.values)
        return
    values = np.concatenate([a.values, b.values])
    wa = a.weights if a.weights is not None else np.ones(a.values.size, np.int64)
    wb = b.weights if b.weights is not None else np.ones(b.values.size, np.int64)
    order = np.argsort(values, kind="stable")
    ca = np.cumsum(np.concatenate([wa, np.zeros(wb.size, np.int64)])[order])
    cb = np.cumsum(np.concatenate([np.zeros(wa.size, np.int64), wb])[order])
    gap = np.diff(values[order])
    yield np.abs(ca / a.count - cb / b.count)[: gap.size], gap


def _exact_curves(a: FloatArray, b: FloatArray) -> Iterator[tuple[FloatArray, FloatArray]]:
    """The walk over raw sorted values, merged one value range at a time.

    The ranges start at every ``_BLOCK``-th value of either sample, so each holds at
    most ``_BLOCK`` values of each (more only inside one long run of equal values,
    which a range never splits): memory stays O(block), not O(n), whatever the
    samples' sizes.
    """
    starts = np.unique(np.concatenate([a[::_BLOCK], b[::_BLOCK]]))
    cut_a = np.append(np.searchsorted(a, starts, "left"), a.size)
    cut_b = np.append(np.searchsorted(b, starts, "left"), b.size)
    for k in range(starts.size):
        i0, i1, j0, j1 = int(cut_a[k]), int(cut_a[k + 1]), int(cut_b[k]), int(cut_b[k + 1])
        part = np.concatenate([a[i0:i1], b[j0:j1]])
        # A stable sort of two sorted runs is a single linear merge; ties put a before b.
        order = np.argsort(part, kind="stable")
        cb = np.cumsum(order >= i1 - i0, dtype=np.int64)
        cb += j0
        ca = np.arange(i0 + j0 + 1, i1 + j1 + 1, dtype=np.int64)
        ca -= cb
        diff = ca / a.size
        diff -= cb / b.size
        np.abs(diff, out=diff)
        merged = part[order]
        # The last gap reaches the next range's first value; at the very end there is
        # none, so the walk is one shorter there (where diff is 0).
        last = k + 1 == starts.size
        gap = np.diff(merged) if last else np.diff(merged, append=starts[k + 1])
        yield diff[: gap.size], gap


def _ks_and_area(a: NumericSample, b: NumericSample, *, ks: bool) -> tuple[float, float]:
    """The KS statistic (at tie-group ends; only when ``ks``) and the area between the CDFs."""
    d = 0.0
    area = 0.0
    for diff, gap in _curves(a, b):
        if ks:
            ends = diff[gap != 0]
            d = max(d, float(ends.max())) if ends.size else d
        else:
            # Not np.dot: BLAS threads fight the column threads on a busy machine.
            area += float(np.multiply(diff, gap, out=diff).sum())
    return d, area


# --- numeric statistics -------------------------------------------------------


def ks(a: NumericSample, b: NumericSample) -> Stat:
    """Two-sample Kolmogorov-Smirnov test, two-sided, as ``scipy.stats.ks_2samp(method="auto")``."""
    n1, n2 = a.count, b.count
    if a.exact and b.exact and max(n1, n2) <= MAX_EXACT_KS:
        return Stat(*_small_ks(a, b), 0.0)
    d, _ = _ks_and_area(a, b, ks=True)
    return Stat(d, _ks_asymptotic(n1, n2, d), a.epsilon + b.epsilon)


def _raw(sample: NumericSample) -> FloatArray:
    if sample.weights is None:
        return sample.values
    return np.repeat(sample.values, sample.weights)


def _small_ks(a: NumericSample, b: NumericSample) -> tuple[float, float]:
    """The KS test by scipy's exact routine (cheap at these sizes): its very p-values."""
    from scipy import stats

    with warnings.catch_warnings():
        # Where its exact sum rounds out of [0, 1] scipy warns and uses the asymptotic formula.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ks_2samp(_raw(a), _raw(b), method="auto")
    return float(result.statistic), float(result.pvalue)


def _ks_asymptotic(n1: int, n2: int, d: float) -> float:
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = float(np.round(m * n / (m + n)))
    if 2.0 * math.exp(-2.0 * en * d * d) < _TINY_P:
        # Massart's bound puts scipy's kstwo.sf below _TINY_P here, where it is slow
        # (seconds at a million rows); the limiting distribution is as close as that.
        return float(special.kolmogorov(d * math.sqrt(en)))
    from scipy import stats

    return float(np.clip(stats.kstwo.sf(d, en), 0.0, 1.0))


def wasserstein(a: NumericSample, b: NumericSample) -> Stat:
    """Wasserstein-1 distance divided by max(std(reference), 0.001), as Evidently normalises it."""
    _, area = _ks_and_area(a, b, ks=False)
    norm = max(a.std, WASSERSTEIN_MIN_STD)
    span = max(a.maximum, b.maximum) - min(a.minimum, b.minimum)
    bound = (a.epsilon + b.epsilon) * span / norm
    return Stat(area / norm, None, bound)


# --- shares -------------------------------------------------------------------


def sturges_edges(a: NumericSample, b: NumericSample) -> FloatArray:
    """``np.histogram_bin_edges(concat(a, b), "sturges")`` without concatenating."""
    first = min(a.minimum, b.minimum)
    last = max(a.maximum, b.maximum)
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = (last - first) / (np.log2(a.count + b.count) + 1.0)
    if a.integer and b.integer and width < 1:
        width = 1.0
    bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True)


def _ranks(sample: NumericSample, edges: FloatArray) -> FloatArray:
    """How many values fall in each bin ([e_i, e_i+1), the last bin closed), as np.histogram."""
    left = np.searchsorted(sample.values, edges[:-1], "left")
    right = np.searchsorted(sample.values, edges[-1:], "right")
    positions = np.concatenate([left, right])
    if sample.weights is None:
        return np.diff(positions).astype(np.float64)
    cumulative = np.concatenate([[0], np.cumsum(sample.weights)])
    counts: FloatArray = np.diff(cumulative[positions]).astype(np.float64)
    return counts


def binned_counts(a: NumericSample, b: NumericSample) -> Counts:
    """Evidently's binning: Sturges bins over both samples when the reference has > 20 values."""
    if a.exact and a.distinct <= 20:
        return _value_counts(a, b)
    edges = sturges_edges(a, b)
    keys: list[object] = edges[:-1].tolist()
    return Counts(keys, _ranks(a, edges), _ranks(b, edges), a.count, b.count)


def _value_counts(a: NumericSample, b: NumericSample) -> Counts:
    """Counts per distinct value over the union of both samples' values."""
    av, ac = a.value_counts()
    bv, bc = b.value_counts()
    keys = np.union1d(av, bv)
    ref = np.zeros(keys.size)
    cur = np.zeros(keys.size)
    ref[np.searchsorted(keys, av)] = ac
    cur[np.searchsorted(keys, bv)] = bc
    return Counts(keys.tolist(), ref, cur, a.count, b.count)


def numeric_counts(a: NumericSample, b: NumericSample) -> Counts:
    """Counts per distinct value, for chi-squared and Z-tests on numeric columns."""
    return _value_counts(a, b)


def aligned_counts(a: CategoricalSample, b: CategoricalSample) -> Counts:
    """Both samples' counts over the union of their categories (reference's order first)."""
    keys = pa.concat_arrays([a.values, b.values.cast(a.values.type)]).unique()
    ref = np.zeros(len(keys))
    cur = np.zeros(len(keys))
    ref[: len(a.values)] = a.counts
    positions = pc.index_in(b.values.cast(a.values.type), value_set=keys).to_numpy()
    cur[positions] = b.counts
    return Counts(keys.to_pylist(), ref, cur, a.count, b.count)


def _shares(counts: Counts) -> tuple[FloatArray, FloatArray]:
    return counts.reference / counts.reference_size, counts.current / counts.current_size


def _floor_zeros(shares: FloatArray) -> FloatArray:
    """Evidently's floor for empty bins: min(non-zero)/1e6 when that is ≤ 1e-4, else 1e-4."""
    nonzero = shares[shares != 0]
    if not nonzero.size:
        return shares
    smallest = float(nonzero.min())
    return np.where(shares == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001, shares)


# --- distribution statistics -----------------------------------------------------


def jensenshannon(counts: Counts) -> Stat:
    """Jensen-Shannon distance (natural log) of the two share vectors, as scipy computes it."""
    p, q = _shares(counts)
    p = p / np.sum(p)
    q = q / np.sum(q)
    m = (p + q) / 2.0
    js = np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m))
    return Stat(float(np.sqrt(js / 2.0)))


def psi(counts: Counts) -> Stat:
    """Population stability index of the share vectors, as Evidently computes it."""
    p, q = (_floor_zeros(s) for s in _shares(counts))
    return Stat(float(np.sum((p - q) * np.log(p / q))))


def chisquare(counts: Counts) -> Stat:
    """Pearson's chi-squared of current counts against reference counts scaled to current size."""
    observed = counts.current
    expected = counts.reference * (counts.current_size / counts.reference_size)
    if observed.size < 2:
        return Stat(0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = float(np.sum((observed - expected) ** 2 / expected))
    return Stat(statistic, float(special.chdtrc(observed.size - 1, statistic)))


def ztest(counts: Counts) -> Stat:
    """Two-proportion Z-test on the share of the smallest category, as Evidently computes it."""
    n1, n2 = counts.reference_size, counts.current_size
    present = (counts.reference > 0).sum() == 1 and (counts.current > 0).sum() == 1
    if present and np.array_equal(counts.reference > 0, counts.current > 0):
        return Stat(0.0, 1.0)
    first = min(range(len(counts.keys)), key=lambda i: _sort_key(counts.keys[i]))
    p1 = (n1 - counts.reference[first]) / n1
    p2 = (n2 - counts.current[first]) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    p_value = 2 * (1 - special.ndtr(np.abs(z)))
    return Stat(float(z), float(p_value))


def _sort_key(key: object) -> tuple[str, object]:
    return (type(key).__name__, key)


def new_categories(a: CategoricalSample, b: CategoricalSample) -> list[object]:
    """Current categories the reference never had, most frequent first."""
    unseen = pc.invert(pc.is_in(b.values.cast(a.values.type), value_set=a.values))
    mask = unseen.to_numpy(zero_copy_only=False)
    order = np.argsort(-b.counts[mask], kind="stable")
    return [b.values.filter(unseen).to_pylist()[i] for i in order]
