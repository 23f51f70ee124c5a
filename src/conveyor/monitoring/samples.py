"""A column made ready for drift tests: sorted numbers or category counts, from data or profile."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from conveyor.profiling.tables import Column, count_values

if TYPE_CHECKING:
    from conveyor.profiling.profile import ColumnProfile

__all__ = [
    "OTHER",
    "CategoricalSample",
    "NumericSample",
    "categorical_sample",
    "numeric_sample",
    "profile_categorical_sample",
    "profile_numeric_sample",
]

# Stands for the categories a Misra-Gries table no longer lists.
OTHER = "\x00other"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class NumericSample:
    """The finite values of a numeric column, sorted, as raw values or as a weighted sketch.

    Attributes:
        values: the values (or sketch items), ascending.
        weights: how many values each item stands for; None when each stands for one.
        count: how many finite values the sample represents.
        nulls: missing values (null or NaN), left out of every test.
        infinite: ±inf values, left out of every test (as Evidently does).
        minimum: the exact smallest finite value (NaN when empty).
        maximum: the exact largest finite value (NaN when empty).
        std: population standard deviation of the finite values.
        integer: the column's type was an integer type.
        rank_error: bound on the rank error of the sample's CDF (0: exact).
        distinct_estimate: a distinct-value count to use when the values are not all kept.
    """

    values: FloatArray
    weights: IntArray | None
    count: int
    nulls: int = 0
    infinite: int = 0
    minimum: float = math.nan
    maximum: float = math.nan
    std: float = math.nan
    integer: bool = False
    rank_error: int = 0
    distinct_estimate: float | None = None

    @property
    def exact(self) -> bool:
        """True when the sample's CDF is the data's CDF."""
        return self.rank_error == 0

    @property
    def epsilon(self) -> float:
        """Bound on the CDF error (rank_error / count)."""
        return self.rank_error / self.count if self.count else 0.0

    @cached_property
    def distinct(self) -> float:
        """How many distinct values there are (exact when the sample is exact)."""
        if self.exact and self.values.size:
            return float(np.count_nonzero(self.values[1:] != self.values[:-1]) + 1)
        if self.exact:
            return 0.0
        return float(self.distinct_estimate or self.values.size)

    def value_counts(self) -> tuple[FloatArray, IntArray]:
        """Distinct values and their counts (estimates when the sample is a compacted sketch)."""
        starts = np.flatnonzero(np.concatenate([[True], self.values[1:] != self.values[:-1]]))
        if self.weights is None:
            counts = np.diff(np.append(starts, self.values.size))
        else:
            counts = np.add.reduceat(self.weights, starts) if starts.size else starts
        return self.values[starts], np.asarray(counts, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class CategoricalSample:
    """The non-null values of a categorical (or boolean) column, counted.

    Attributes:
        values: the distinct values (strings).
        counts: how often each occurred (a lower bound when ``error`` > 0).
        count: how many non-null values there are.
        nulls: missing values, left out of every test.
        error: bound on how much each count is too low (0: exact).
    """

    values: pa.Array
    counts: IntArray
    count: int
    nulls: int = 0
    error: int = 0

    @property
    def exact(self) -> bool:
        """True when every count is exact and every value is listed."""
        return self.error == 0

    @property
    def distinct(self) -> float:
        """How many distinct values were counted."""
        return float(len(self.values))


def numeric_sample(column: Column) -> NumericSample:
    """Sort a numeric column's finite values (one copy; the input is not changed)."""
    numbers = column.numbers if column.numbers is not None else np.empty(0)
    finite_mask = np.isfinite(numbers)
    finite_count = int(np.count_nonzero(finite_mask))
    if finite_count == numbers.size:
        values = np.sort(numbers)
    else:
        values = numbers[finite_mask]
        values.sort()
    nulls = int(np.count_nonzero(np.isnan(numbers))) if finite_count < numbers.size else 0
    empty = not values.size
    return NumericSample(
        values=values,
        weights=None,
        count=finite_count,
        nulls=nulls,
        infinite=numbers.size - finite_count - nulls,
        minimum=math.nan if empty else float(values[0]),
        maximum=math.nan if empty else float(values[-1]),
        std=math.nan if empty else float(np.std(values)),
        integer=column.integer,
    )


def categorical_sample(column: Column) -> CategoricalSample:
    """Count a categorical column's values."""
    strings = column.strings if column.strings is not None else pa.chunked_array([], pa.string())
    values, counts, nulls = count_values(strings)
    return CategoricalSample(values, counts, int(counts.sum()), nulls)


def profile_numeric_sample(cp: ColumnProfile) -> NumericSample:
    """The numbers a profile keeps: its exact value table if any, else its quantile sketch."""
    assert cp.quantiles is not None
    m = cp.moments
    if cp.values.exact and cp.values.values is not None:
        keys = np.asarray(cp.values.values.to_numpy(zero_copy_only=False), dtype=np.float64)
        order = np.argsort(keys)
        values, counts, rank_error = keys[order], cp.values.counts[order], 0
    else:
        values, counts = cp.quantiles.weighted()
        rank_error = cp.quantiles.rank_error
    # With every value there once, the exact tests apply.
    weights = None if rank_error == 0 and bool(np.all(counts == 1)) else counts
    return NumericSample(
        values=values,
        weights=weights,
        count=m.count,
        nulls=cp.nulls,
        infinite=cp.infinite,
        minimum=m.minimum if m.count else math.nan,
        maximum=m.maximum if m.count else math.nan,
        std=m.std,
        integer=cp.integer,
        rank_error=rank_error,
        distinct_estimate=cp.distinct,
    )


def profile_categorical_sample(cp: ColumnProfile) -> CategoricalSample:
    """The counts a profile keeps; what Misra-Gries dropped is lumped into `OTHER`."""
    table = cp.values
    values = table.values if table.values is not None else pa.array([], pa.large_string())
    counts = table.counts
    valid = cp.count - cp.nulls
    missing = valid - int(counts.sum())
    if missing > 0:
        values = pa.concat_arrays([values, pa.array([OTHER], values.type)])
        counts = np.append(counts, missing)
    return CategoricalSample(values, counts, valid, cp.nulls, table.error)
