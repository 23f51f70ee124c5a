"""Data drift between a reference and a current dataset, column by column, exact or from profiles.

Default method per column, as Evidently's ``DataDriftPreset`` chooses it, where
*n* is the number of non-missing, finite reference values of the column and *k*
the number of distinct values in reference and current together:

=========================  ==============================  =================================
column                     n ≤ 1000                        n > 1000
=========================  ==============================  =================================
numeric, k > 5             ``ks``: p-value ≤ 0.05          ``wasserstein`` (÷ std(ref)) ≥ 0.1
numeric, 2 < k ≤ 5         ``chisquare``: p-value < 0.05   ``jensenshannon`` ≥ 0.1
numeric, k ≤ 2             ``z``: p-value < 0.05           ``jensenshannon`` ≥ 0.1
categorical/boolean, k > 2 ``chisquare``: p-value < 0.05   ``jensenshannon`` ≥ 0.1
categorical/boolean, k ≤ 2 ``z``: p-value < 0.05           ``jensenshannon`` ≥ 0.1
=========================  ==============================  =================================

``methods={"col": "psi"}`` overrides the method of a column (``ks``,
``wasserstein``, ``psi``, ``jensenshannon``, ``chisquare``, ``z``) and
``thresholds={"col": 0.2}`` its threshold. Missing and ±inf values are left
out of every test (and counted). Datetime columns are not tested, as in
Evidently. The dataset drifts when the share of drifted columns among the
tested ones is at least ``drift_share`` (0.5, Evidently's default).

``mode="exact"`` reads raw data and gives scipy's statistics; ``mode="sketch"``
works from `Profile` objects (raw data is profiled first) so that a month of
traffic is never loaded at once; each column then carries ``error_bound``, a
bound on ``|statistic - exact statistic|`` derived from the sketches' rank
error (see `conveyor.monitoring.methods`), or None where no bound is known.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from conveyor.errors import ValidationError
from conveyor.monitoring import methods as m
from conveyor.monitoring.results import ColumnDrift, DriftReport, histogram
from conveyor.monitoring.samples import (
    CategoricalSample,
    NumericSample,
    categorical_sample,
    numeric_sample,
    profile_categorical_sample,
    profile_numeric_sample,
)
from conveyor.profiling.profile import Profile, profile
from conveyor.profiling.tables import Kind, Source, open_source

__all__ = ["METHODS", "ColumnDrift", "DriftReport", "Method", "Reference", "drift"]

Sample = NumericSample | CategoricalSample
Mode = Literal["exact", "sketch"]


@dataclass(frozen=True)
class Method:
    """A drift method: which kinds it tests, its default threshold and how the verdict reads."""

    name: str
    kinds: frozenset[str]
    threshold: float
    p_value: bool  # verdict on a p-value (small means drift) rather than a distance
    inclusive: bool  # p ≤ threshold (KS) rather than p < threshold

    def verdict(self, stat: m.Stat, threshold: float) -> bool | None:
        """Drifted or not; None when the statistic is undefined (NaN)."""
        value = stat.p_value if self.p_value else stat.statistic
        if value is None or math.isnan(value):
            return None
        if not self.p_value:
            return value >= threshold
        return value <= threshold if self.inclusive else value < threshold


_NUMERIC = frozenset({"numeric"})
_BOTH = frozenset({"numeric", "categorical"})
METHODS: dict[str, Method] = {
    "ks": Method("ks", _NUMERIC, 0.05, p_value=True, inclusive=True),
    "wasserstein": Method("wasserstein", _NUMERIC, 0.1, p_value=False, inclusive=True),
    "psi": Method("psi", _BOTH, 0.1, p_value=False, inclusive=True),
    "jensenshannon": Method("jensenshannon", _BOTH, 0.1, p_value=False, inclusive=True),
    "chisquare": Method("chisquare", _BOTH, 0.05, p_value=True, inclusive=False),
    "z": Method("z", _BOTH, 0.05, p_value=True, inclusive=False),
}
SMALL_REFERENCE = 1000  # Evidently's switch from p-value tests to distances


class Reference:
    """Reference data made ready for exact drift tests; build once, test many current windows.

    Each column is sorted (numeric) or counted (categorical) the first time a
    test needs it and, with ``keep=True``, kept for the next test.

    Args:
        data: a pandas or polars DataFrame, a pyarrow Table or a Parquet file path.
        keep: keep prepared columns (memory: one float64 per numeric value).
    """

    def __init__(self, data: Any, *, keep: bool = True) -> None:
        self.source: Source = open_source(data)
        self.keep = keep
        self._samples: dict[str, Sample] = {}

    @property
    def names(self) -> tuple[str, ...]:
        """The reference's columns."""
        return self.source.names

    def kind(self, name: str) -> Kind | None:
        """The column's kind (None when its type is not monitored)."""
        return self.source.kind(name)

    def type_name(self, name: str) -> str:
        """The column's type, for messages."""
        return self.source.type_name(name)

    def sample(self, name: str) -> Sample:
        """The column, sorted or counted."""
        found = self._samples.get(name)
        if found is None:
            found = _raw_sample(self.source, name)
            if self.keep:
                self._samples[name] = found
        return found


class _ProfileSide:
    """A profile seen through the same questions as a `Reference`."""

    def __init__(self, prof: Profile) -> None:
        self.profile = prof
        self.names = tuple(prof.columns) + tuple(prof.skipped)

    def kind(self, name: str) -> Kind | None:
        cp = self.profile.columns.get(name)
        return None if cp is None else cp.kind

    def type_name(self, name: str) -> str:
        return self.profile.skipped.get(name) or str(self.kind(name))

    def sample(self, name: str) -> Sample:
        cp = self.profile.columns[name]
        return profile_numeric_sample(cp) if cp.numeric else profile_categorical_sample(cp)


Side = Reference | _ProfileSide


def _raw_sample(source: Source, name: str) -> Sample:
    column = source.column(name)
    if column.kind in ("numeric", "datetime"):
        return numeric_sample(column)
    return categorical_sample(column)


def _side(data: Any, mode: Mode, role: str) -> Side:
    if mode == "sketch":
        if isinstance(data, Profile):
            return _ProfileSide(data)
        return _ProfileSide(profile(data.source if isinstance(data, Reference) else data))
    if isinstance(data, Profile):
        rule = "a Profile holds sketches: test profiles in sketch mode (--mode sketch)"
        raise ValidationError(role, rule)
    return data if isinstance(data, Reference) else Reference(data, keep=False)


# --- choosing and running methods ----------------------------------------------------


def _test_kind(kind: Kind | None) -> str | None:
    return {"numeric": "numeric", "categorical": "categorical", "boolean": "categorical"}.get(
        kind or ""
    )


def default_method(ref: Sample, cur: Sample) -> str:
    """Evidently's default method for these two samples (see the module docstring)."""
    small = ref.count <= SMALL_REFERENCE
    if isinstance(ref, NumericSample) and isinstance(cur, NumericSample):
        many = ref.distinct > 5 or len(m.numeric_counts(ref, cur).keys) > 5
        if many:
            return "ks" if small else "wasserstein"
        if not small:
            return "jensenshannon"
        return "chisquare" if len(m.numeric_counts(ref, cur).keys) > 2 else "z"
    if not small:
        return "jensenshannon"
    assert isinstance(ref, CategoricalSample)
    assert isinstance(cur, CategoricalSample)
    return "chisquare" if len(m.aligned_counts(ref, cur).keys) > 2 else "z"


def run_method(name: str, ref: Sample, cur: Sample) -> m.Stat:
    """One method's statistic on two samples of the same kind."""
    if isinstance(ref, NumericSample) and isinstance(cur, NumericSample):
        if name == "ks":
            return m.ks(ref, cur)
        if name == "wasserstein":
            return m.wasserstein(ref, cur)
        if name in ("psi", "jensenshannon"):
            return _binned_stat(name, ref, cur)
        counts = m.numeric_counts(ref, cur)
        exact = ref.exact and cur.exact
    else:
        assert isinstance(ref, CategoricalSample)
        assert isinstance(cur, CategoricalSample)
        counts = m.aligned_counts(ref, cur)
        exact = ref.exact and cur.exact
    stat = _COUNT_STATS[name](counts)
    return stat if exact else m.Stat(stat.statistic, stat.p_value, None)


def _binned_stat(name: str, ref: NumericSample, cur: NumericSample) -> m.Stat:
    counts = m.binned_counts(ref, cur)
    stat = _COUNT_STATS[name](counts)
    if ref.exact and cur.exact:
        return stat
    if name == "psi":
        return m.Stat(stat.statistic, None, None)
    bins = len(counts.keys)
    bound = sum(math.sqrt(math.log(2) * bins * s.epsilon) for s in (ref, cur))
    return m.Stat(stat.statistic, None, bound)


_COUNT_STATS = {
    "psi": m.psi,
    "jensenshannon": m.jensenshannon,
    "chisquare": m.chisquare,
    "z": m.ztest,
}


# --- one column ---------------------------------------------------------------------------


def _no_verdict(name: str, kind: str, reason: str, method: str | None = None) -> ColumnDrift:
    return ColumnDrift(name, kind, method, None, None, None, None, reason=reason)


def _check_column(name: str, reference: Side, current: Side) -> ColumnDrift | None:
    """A verdict-less result when the column cannot be tested, else None."""
    kind = reference.kind(name)
    if kind is None:
        return _no_verdict(
            name, "unsupported", f"type {reference.type_name(name)} is not monitored"
        )
    if kind == "datetime":
        return _no_verdict(name, kind, "datetime columns are not tested for drift")
    if name not in current.names:
        return _no_verdict(name, kind, "missing from the current data")
    current_kind = current.kind(name)
    if _test_kind(current_kind) != _test_kind(kind):
        found = current_kind or current.type_name(name)
        return _no_verdict(name, kind, f"type changed: {kind} in reference, {found} in current")
    return None


def _empty_reason(ref: Sample, cur: Sample) -> str | None:
    for role, sample in (("reference", ref), ("current", cur)):
        if sample.count == 0:
            return f"no values in the {role} data (empty, or all missing)"
    return None


def _column_drift(
    name: str, reference: Side, current: Side, method: str | None, threshold: float | None
) -> ColumnDrift:
    early = _check_column(name, reference, current)
    if early is not None:
        return early
    kind = str(reference.kind(name))
    ref, cur = reference.sample(name), current.sample(name)
    empty = _empty_reason(ref, cur)
    if empty is not None:
        return _no_verdict(name, kind, empty, method)
    chosen = METHODS[method or default_method(ref, cur)]
    limit = chosen.threshold if threshold is None else threshold
    stat = run_method(chosen.name, ref, cur)
    drifted = chosen.verdict(stat, limit)
    return ColumnDrift(
        column=name,
        kind=kind,
        method=chosen.name,
        statistic=stat.statistic,
        p_value=stat.p_value,
        threshold=limit,
        drifted=drifted,
        reason=None if drifted is not None else "the statistic is undefined for these values",
        error_bound=stat.error_bound,
        reference_size=ref.count,
        current_size=cur.count,
        notes=_notes(ref, cur, stat, limit, chosen),
        histogram=histogram(ref, cur),
    )


def _notes(ref: Sample, cur: Sample, stat: m.Stat, limit: float, method: Method) -> tuple[str, ...]:
    notes = []
    for role, sample in (("reference", ref), ("current", cur)):
        left_out = sample.nulls + (sample.infinite if isinstance(sample, NumericSample) else 0)
        if left_out:
            notes.append(f"{left_out} missing or infinite {role} values left out")
    if isinstance(ref, CategoricalSample) and isinstance(cur, CategoricalSample):
        new = m.new_categories(ref, cur)
        if new:
            notes.append(f"{len(new)} new categories in current: {', '.join(map(str, new[:5]))}")
    value = stat.p_value if method.p_value else stat.statistic
    if stat.error_bound and value is not None and abs(value - limit) <= stat.error_bound:
        notes.append("the verdict is within the sketches' error bound of the threshold")
    return tuple(notes)


# --- the whole dataset --------------------------------------------------------------------


def _validate(
    reference: Side,
    methods: Mapping[str, str],
    thresholds: Mapping[str, float],
    columns: Sequence[str] | None,
) -> list[str]:
    names = list(columns) if columns is not None else list(reference.names)
    for name in [*names, *methods, *thresholds]:
        if name not in reference.names:
            raise ValidationError(name, "is not a column of the reference data")
    for name, method in methods.items():
        if method not in METHODS:
            raise ValidationError(
                name, f"unknown drift method {method!r}; use one of {list(METHODS)}"
            )
        kind = _test_kind(reference.kind(name))
        if kind is not None and kind not in METHODS[method].kinds:
            raise ValidationError(name, f"method {method!r} does not apply to a {kind} column")
    return names


def drift(
    reference: Any,
    current: Any,
    methods: Mapping[str, str] | None = None,
    mode: Mode = "exact",
    *,
    thresholds: Mapping[str, float] | None = None,
    columns: Sequence[str] | None = None,
    drift_share: float = 0.5,
    workers: int | None = None,
) -> DriftReport:
    """Test every column of ``reference`` for drift in ``current``.

    Args:
        reference: a DataFrame (pandas, polars), pyarrow Table, Parquet path, a prepared
            `Reference`, or (``mode="sketch"``) a `Profile`.
        current: the same kinds of input.
        methods: method per column, overriding the default (see the module docstring).
        mode: ``"exact"`` on raw data, or ``"sketch"`` from profiles.
        thresholds: threshold per column, overriding the method's default.
        columns: test only these columns (default: every reference column).
        drift_share: share of drifted columns from which the dataset counts as drifted.
        workers: threads (default: one per CPU); columns are tested in parallel.

    Returns:
        The report: a `ColumnDrift` per column and the dataset verdict.

    Raises:
        ValidationError: for unsupported input, unknown columns or methods, a method that
            does not apply to its column's type, or profiles in exact mode.
    """
    if mode not in ("exact", "sketch"):
        raise ValidationError("mode", "must be 'exact' or 'sketch'")
    if not 0 < drift_share <= 1:
        raise ValidationError("drift_share", "must be in (0, 1]")
    ref_side, cur_side = _side(reference, mode, "reference"), _side(current, mode, "current")
    chosen, limits = dict(methods or {}), dict(thresholds or {})
    names = _validate(ref_side, chosen, limits, columns)
    size = max(1, min(workers or os.cpu_count() or 1, len(names)))
    with ThreadPoolExecutor(size, thread_name_prefix="conveyor-drift") as pool:
        results = list(
            pool.map(
                lambda name: _column_drift(
                    name, ref_side, cur_side, chosen.get(name), limits.get(name)
                ),
                names,
            )
        )
    return DriftReport.from_columns(results, mode=mode, drift_share=drift_share)
