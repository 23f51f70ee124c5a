"""What a drift test returns: a result per column, the dataset verdict, and histograms to plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from conveyor.monitoring.samples import CategoricalSample, NumericSample

__all__ = ["ColumnDrift", "DriftReport", "Histogram", "histogram"]

HISTOGRAM_BINS = 30
HISTOGRAM_CATEGORIES = 20


@dataclass(frozen=True)
class Histogram:
    """Reference and current shares over the same bins or categories, for plots.

    Attributes:
        labels: numeric: the ``len(shares) + 1`` bin edges; categorical: the categories
            (the most frequent ones, then "(other)" when there are more).
        reference: share of reference values per bin or category.
        current: share of current values per bin or category.
        numeric: True for bins of numbers, False for categories.
    """

    labels: list[Any]
    reference: list[float]
    current: list[float]
    numeric: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "labels": self.labels,
            "reference": self.reference,
            "current": self.current,
            "numeric": self.numeric,
        }


def histogram(
    ref: NumericSample | CategoricalSample, cur: NumericSample | CategoricalSample
) -> Histogram:
    """Shares of both samples over common bins (numbers) or their top categories."""
    if isinstance(ref, NumericSample) and isinstance(cur, NumericSample):
        return _numeric_histogram(ref, cur)
    assert isinstance(ref, CategoricalSample)
    assert isinstance(cur, CategoricalSample)
    return _categorical_histogram(ref, cur)


def _bin_shares(sample: NumericSample, edges: np.ndarray) -> list[float]:
    left = np.searchsorted(sample.values, edges[:-1], "left")
    positions = np.append(left, sample.values.size)
    if sample.weights is None:
        counts = np.diff(positions)
    else:
        counts = np.diff(np.concatenate([[0], np.cumsum(sample.weights)])[positions])
    shares: list[float] = (counts / max(sample.count, 1)).tolist()
    return shares


def _numeric_histogram(ref: NumericSample, cur: NumericSample) -> Histogram:
    low, high = min(ref.minimum, cur.minimum), max(ref.maximum, cur.maximum)
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    return Histogram(edges.tolist(), _bin_shares(ref, edges), _bin_shares(cur, edges), True)


def _categorical_histogram(ref: CategoricalSample, cur: CategoricalSample) -> Histogram:
    keys = pa.concat_arrays([ref.values, cur.values.cast(ref.values.type)])
    weights = np.concatenate([ref.counts / max(ref.count, 1), cur.counts / max(cur.count, 1)])
    table = (
        pa.table({"k": keys, "w": weights})
        .group_by("k", use_threads=False)
        .aggregate([("w", "sum")])
    )
    order = np.argsort(-table.column("w_sum").to_numpy(), kind="stable")[:HISTOGRAM_CATEGORIES]
    top = [table.column("k")[int(i)].as_py() for i in order]
    shares = [_category_shares(s, top) for s in (ref, cur)]
    labels: list[Any] = list(top)
    if any(1 - sum(s) > 1e-12 for s in shares):
        labels.append("(other)")
        shares = [[*s, max(0.0, 1 - sum(s))] for s in shares]
    return Histogram(labels, shares[0], shares[1], False)


def _category_shares(sample: CategoricalSample, keys: Sequence[Any]) -> list[float]:
    index = {value: i for i, value in enumerate(sample.values.to_pylist())}
    total = max(sample.count, 1)
    return [float(sample.counts[index[k]]) / total if k in index else 0.0 for k in keys]


@dataclass(frozen=True)
class ColumnDrift:
    """The drift result of one column.

    Attributes:
        column: the column's name.
        kind: numeric, categorical, boolean, datetime or unsupported.
        method: the method used (None when no test ran).
        statistic: the method's statistic (None when no test ran).
        p_value: the p-value of tests (``ks``, ``chisquare``, ``z``); None for distances.
        threshold: the threshold the verdict used.
        drifted: the verdict; None when the column could not be tested (see ``reason``).
        reason: why there is no verdict.
        error_bound: bound on |statistic - exact statistic|: 0.0 exact, None unknown.
        reference_size: reference values tested (missing and infinite ones left out).
        current_size: current values tested.
        notes: remarks that do not prevent a verdict (values left out, new categories…).
        histogram: both distributions over common bins, for plots.
    """

    column: str
    kind: str
    method: str | None
    statistic: float | None
    p_value: float | None
    threshold: float | None
    drifted: bool | None
    reason: str | None = None
    error_bound: float | None = 0.0
    reference_size: int = 0
    current_size: int = 0
    notes: tuple[str, ...] = ()
    histogram: Histogram | None = field(default=None, repr=False)

    def to_dict(self, *, histogram: bool = False) -> dict[str, Any]:
        """Plain data; the histogram only when asked for."""
        data: dict[str, Any] = {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "reason": self.reason,
            "error_bound": self.error_bound,
            "reference_size": self.reference_size,
            "current_size": self.current_size,
            "notes": list(self.notes),
        }
        if histogram:
            data["histogram"] = None if self.histogram is None else self.histogram.to_dict()
        return data


@dataclass(frozen=True)
class DriftReport:
    """Drift of a dataset: a result per column and the dataset verdict.

    Attributes:
        columns: each column's result, by name, in the reference's order.
        mode: "exact" or "sketch".
        drift_share: the share of drifted columns from which the dataset drifts.
        share_drifted: drifted columns / columns with a verdict (None when none has one).
        drifted: the dataset verdict (None when no column could be tested).
    """

    columns: dict[str, ColumnDrift]
    mode: str
    drift_share: float
    share_drifted: float | None
    drifted: bool | None

    @classmethod
    def from_columns(
        cls, results: Sequence[ColumnDrift], *, mode: str, drift_share: float
    ) -> DriftReport:
        """The report over these column results."""
        tested = [r for r in results if r.drifted is not None]
        share = sum(1 for r in tested if r.drifted) / len(tested) if tested else None
        verdict = None if share is None else share >= drift_share
        return cls({r.column: r for r in results}, mode, drift_share, share, verdict)

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the columns that drifted."""
        return [name for name, result in self.columns.items() if result.drifted]

    @property
    def tested_columns(self) -> list[str]:
        """Names of the columns that got a verdict."""
        return [name for name, result in self.columns.items() if result.drifted is not None]

    def to_dict(self, *, histograms: bool = False) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "mode": self.mode,
            "drifted": self.drifted,
            "share_drifted": self.share_drifted,
            "drift_share": self.drift_share,
            "number_of_columns": len(self.columns),
            "number_of_tested_columns": len(self.tested_columns),
            "number_of_drifted_columns": len(self.drifted_columns),
            "columns": {
                name: result.to_dict(histogram=histograms) for name, result in self.columns.items()
            },
        }
