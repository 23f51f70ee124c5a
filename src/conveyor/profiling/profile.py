"""Profiles: per-column statistics of a dataset from one streaming pass; mergeable, serializable."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from conveyor.errors import ValidationError
from conveyor.profiling.sketches import (
    FloatArray,
    FrequencySketch,
    HyperLogLog,
    Moments,
    QuantileSketch,
    hash_floats,
    hash_strings,
)
from conveyor.profiling.tables import Column, Kind, Source, count_values, open_source

__all__ = ["ColumnProfile", "Profile", "profile"]

FORMAT = "conveyor.profile/1"
DEFAULT_K = 4096
DEFAULT_TOP_CAPACITY = 10_000
NUMERIC_VALUE_CAPACITY = 256
IN_MEMORY_BATCH_ROWS = 1 << 20
_SUMMARY_QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}
_SUMMARY_QUANTILES["p99"] = 0.99


@dataclass
class ColumnProfile:
    """Mergeable statistics of one column.

    Attributes:
        name: the column.
        kind: numeric, categorical, boolean or datetime (datetimes in epoch seconds).
        count: rows seen.
        nulls: missing values (null, NaN, NaT).
        infinite: ±inf values (numeric columns).
        integer: every chunk had an integer type.
        moments: count/mean/std/min/max of the finite values (numeric and datetime).
        quantiles: a quantile sketch of the finite values (numeric and datetime).
        values: value counts: Misra-Gries top values for categorical and boolean columns,
            an exact table of at most 256 distinct numbers (or nothing) for numeric ones.
        hll: distinct-value sketch.
    """

    name: str
    kind: Kind
    count: int = 0
    nulls: int = 0
    infinite: int = 0
    integer: bool = False
    moments: Moments = field(default_factory=Moments)
    quantiles: QuantileSketch | None = None
    values: FrequencySketch = field(default_factory=lambda: FrequencySketch(DEFAULT_TOP_CAPACITY))
    hll: HyperLogLog = field(default_factory=HyperLogLog)

    @classmethod
    def empty(cls, name: str, kind: Kind, *, k: int, top_capacity: int) -> ColumnProfile:
        """A profile of no rows for a column of this kind."""
        if kind in ("numeric", "datetime"):
            table = FrequencySketch(NUMERIC_VALUE_CAPACITY, exact_only=True)
            return cls(name, kind, quantiles=QuantileSketch(k), values=table, integer=True)
        return cls(name, kind, values=FrequencySketch(top_capacity))

    @property
    def numeric(self) -> bool:
        """True for numeric and datetime columns (they have moments and quantiles)."""
        return self.quantiles is not None

    @property
    def valid(self) -> int:
        """Values that are neither missing nor infinite."""
        return self.count - self.nulls - self.infinite

    @property
    def distinct(self) -> float:
        """Distinct non-missing values: exact while the value table is, else HyperLogLog."""
        if self.values.exact and self.values.values is not None:
            return float(len(self.values.values))
        if self.values.exact and self.valid == 0:
            return 0.0
        return self.hll.estimate()

    def quantile(self, q: float | Sequence[float]) -> FloatArray:
        """Estimated quantiles of the finite values (numeric and datetime columns)."""
        if self.quantiles is None:
            raise ValidationError(self.name, f"a {self.kind} column has no quantiles")
        return self.quantiles.quantile(q)

    def histogram(self, bins: int = 20) -> tuple[FloatArray, FloatArray]:
        """Equal-width bin edges over [min, max] and estimated counts per bin."""
        if self.quantiles is None or not self.moments.count:
            return np.empty(0), np.empty(0)
        low, high = self.moments.minimum, self.moments.maximum
        if low == high:
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, bins + 1)
        items, weights = self.quantiles.weighted()
        cumulative = np.concatenate([[0], np.cumsum(weights)])
        left = cumulative[np.searchsorted(items, edges[:-1], "left")]
        counts = np.diff(np.append(left, self.moments.count)).astype(np.float64)
        return edges, counts

    def top(self, n: int = 10) -> list[tuple[Any, int]]:
        """The most frequent values with their counts (lower bounds once approximate)."""
        return self.values.top(n)

    def update(self, column: Column) -> None:
        """Fold in one chunk of this column."""
        self.count += len(column)
        if self.quantiles is not None:
            self._update_numbers(column)
        else:
            self._update_strings(column)

    def _update_numbers(self, column: Column) -> None:
        assert column.numbers is not None
        assert self.quantiles is not None
        numbers = column.numbers
        finite = np.isfinite(numbers)
        valid = int(np.count_nonzero(finite))
        values = np.sort(numbers) if valid == numbers.size else np.sort(numbers[finite])
        if valid < numbers.size:
            nans = int(np.count_nonzero(np.isnan(numbers)))
            self.nulls += nans
            self.infinite += numbers.size - valid - nans
        self.integer = self.integer and column.integer
        self.moments.add_sorted(values)
        self.quantiles.add_sorted(values)
        starts = _run_starts(values)
        distinct = values if starts is None else values[starts]
        self.hll.add_hashes(hash_floats(distinct))
        if distinct.size > self.values.capacity:
            self.values.mark_overflowed()
        elif not self.values.overflowed and distinct.size:
            ends = np.append(starts, values.size) if starts is not None else None
            counts = np.ones(values.size, np.int64) if ends is None else np.diff(ends)
            self.values.add(pa.array(distinct, pa.float64()), counts)

    def _update_strings(self, column: Column) -> None:
        assert column.strings is not None
        values, counts, nulls = count_values(column.strings)
        self.nulls += nulls
        if len(values):
            self.values.add(values, counts)
            self.hll.add_hashes(hash_strings(values))

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """The profile of both inputs' rows together."""
        if other.kind != self.kind and {self.kind, other.kind} != {"categorical", "boolean"}:
            raise ValidationError(
                self.name, f"cannot merge a {self.kind} and a {other.kind} column"
            )
        quantiles = None
        if self.quantiles is not None and other.quantiles is not None:
            quantiles = self.quantiles.merge(other.quantiles)
        return ColumnProfile(
            name=self.name,
            kind=self.kind if self.kind == other.kind else "categorical",
            count=self.count + other.count,
            nulls=self.nulls + other.nulls,
            infinite=self.infinite + other.infinite,
            integer=self.integer and other.integer,
            moments=self.moments.merge(other.moments),
            quantiles=quantiles,
            values=self.values.merge(other.values),
            hll=self.hll.merge(other.hll),
        )

    def summary(self, *, bins: int = 20, top: int = 10) -> dict[str, Any]:
        """Plain data for people and JSON: counts, distinct, moments, quantiles, histogram, top."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
            "distinct": round(self.distinct),
            "distinct_exact": self.values.exact,
        }
        if self.quantiles is not None:
            out.update(self._numeric_summary(bins))
        else:
            out["top"] = [{"value": v, "count": c} for v, c in self.top(top)]
            out["top_error"] = self.values.error
        return out

    def _numeric_summary(self, bins: int) -> dict[str, Any]:
        assert self.quantiles is not None
        show = _as_datetime if self.kind == "datetime" else _as_number
        m = self.moments
        qs = self.quantile(list(_SUMMARY_QUANTILES.values())) if m.count else np.empty(0)
        edges, counts = self.histogram(bins)
        return {
            "infinite": self.infinite,
            "min": show(m.minimum) if m.count else None,
            "max": show(m.maximum) if m.count else None,
            "mean": show(m.mean) if m.count else None,
            "std": _as_number(m.std) if m.count else None,
            "quantiles": {
                key: show(float(v)) for key, v in zip(_SUMMARY_QUANTILES, qs, strict=False)
            },
            "quantile_epsilon": self.quantiles.epsilon,
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        }

    def to_dict(self) -> dict[str, Any]:
        """The full mergeable state, JSON-able."""
        return {
            "name": self.name,
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
            "infinite": self.infinite,
            "integer": self.integer,
            "moments": self.moments.to_dict(),
            "quantiles": None if self.quantiles is None else self.quantiles.to_dict(),
            "values": self.values.to_dict(),
            "hll": self.hll.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnProfile:
        """The column profile `to_dict` wrote."""
        quantiles = data["quantiles"]
        return cls(
            name=data["name"],
            kind=data["kind"],
            count=int(data["count"]),
            nulls=int(data["nulls"]),
            infinite=int(data["infinite"]),
            integer=bool(data["integer"]),
            moments=Moments.from_dict(data["moments"]),
            quantiles=None if quantiles is None else QuantileSketch.from_dict(quantiles),
            values=FrequencySketch.from_dict(data["values"]),
            hll=HyperLogLog.from_dict(data["hll"]),
        )


def _run_starts(values: FloatArray) -> npt.NDArray[np.int64] | None:
    """Where each run of equal sorted values starts; None when every value differs."""
    changes = values[1:] != values[:-1]
    if values.size < 2 or bool(changes.all()):
        return None if values.size > 1 else np.zeros(values.size, np.int64)
    return np.concatenate([[0], np.flatnonzero(changes) + 1]).astype(np.int64)


def _as_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _as_datetime(value: float) -> str | None:
    if math.isnan(value):
        return None
    return datetime.fromtimestamp(value, tz=UTC).isoformat()


@dataclass
class Profile:
    """Statistics of a dataset, column by column; merge windows, store as bytes.

    Attributes:
        rows: how many rows were profiled.
        columns: each profiled column's statistics, by name.
        skipped: columns left out because their type is not monitored, with that type.
    """

    rows: int
    columns: dict[str, ColumnProfile]
    skipped: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ColumnProfile:
        try:
            return self.columns[name]
        except KeyError:
            raise ValidationError(name, "is not a column of this profile") from None

    def merge(self, other: Profile) -> Profile:
        """The profile of both inputs' rows (same columns, same kinds)."""
        if set(self.columns) != set(other.columns):
            differ = sorted(set(self.columns) ^ set(other.columns))
            raise ValidationError("columns", f"profiles to merge differ in columns {differ}")
        merged = {name: cp.merge(other.columns[name]) for name, cp in self.columns.items()}
        return Profile(self.rows + other.rows, merged, {**self.skipped, **other.skipped})

    def to_dict(self, *, bins: int = 20, top: int = 10) -> dict[str, Any]:
        """A readable summary (not the mergeable state; use `to_bytes` to keep that)."""
        columns = {name: cp.summary(bins=bins, top=top) for name, cp in self.columns.items()}
        return {"rows": self.rows, "columns": columns, "skipped": dict(self.skipped)}

    def to_bytes(self) -> bytes:
        """The full state as compact, deterministic JSON (arrays in base64)."""
        state = {
            "format": FORMAT,
            "rows": self.rows,
            "skipped": self.skipped,
            "columns": [cp.to_dict() for cp in self.columns.values()],
        }
        return json.dumps(state, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """The profile `to_bytes` wrote.

        Raises:
            ValidationError: when the bytes are not a conveyor profile of a known format.
        """
        try:
            state = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            state = None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValidationError("profile", f"is not a conveyor profile (format {FORMAT})")
        columns = [ColumnProfile.from_dict(c) for c in state["columns"]]
        return cls(int(state["rows"]), {c.name: c for c in columns}, dict(state["skipped"]))


def profile(
    data: Any,
    *,
    columns: Sequence[str] | None = None,
    batch_rows: int | None = None,
    k: int = DEFAULT_K,
    top_capacity: int = DEFAULT_TOP_CAPACITY,
    workers: int | None = None,
) -> Profile:
    """Profile a dataset in one streaming pass, column chunks in parallel threads.

    Args:
        data: a pandas or polars DataFrame, a pyarrow Table, or a Parquet file path
            (read in row batches, so memory stays bounded at any size).
        columns: only these columns (default: all).
        batch_rows: rows per chunk in memory (default 2**20); Parquet is read by row group.
        k: quantile sketch size per level; CDF error ≈ (1 + log2(chunks)) / k.
        top_capacity: distinct categories counted exactly before Misra-Gries.
        workers: threads (default: one per CPU, at most one per column).

    Returns:
        The profile; ``profile.to_bytes()`` is what to store as an artifact.

    Raises:
        ValidationError: for unsupported input or a column that does not exist.
    """
    source = open_source(data)
    names = _names(source, columns)
    kinds = {name: source.kind(name) for name in names}
    skipped = {name: source.type_name(name) for name, kind in kinds.items() if kind is None}
    profiles = {
        name: ColumnProfile.empty(name, kind, k=k, top_capacity=top_capacity)
        for name, kind in kinds.items()
        if kind is not None
    }
    rows = batch_rows or IN_MEMORY_BATCH_ROWS
    pool_size = max(1, min(workers or os.cpu_count() or 1, len(profiles)))
    with ThreadPoolExecutor(pool_size, thread_name_prefix="conveyor-profile") as pool:
        for batch in source.batches(rows, list(profiles)):
            tasks = [_updater(cp, batch) for cp in profiles.values()]
            list(pool.map(lambda task: task(), tasks))
    return Profile(source.num_rows, profiles, skipped)


def _updater(cp: ColumnProfile, batch: Source) -> Callable[[], None]:
    return lambda: cp.update(batch.column(cp.name))


def _names(source: Source, columns: Iterable[str] | None) -> list[str]:
    if columns is None:
        return list(source.names)
    names = list(columns)
    for name in names:
        if name not in source.names:
            raise ValidationError(name, "is not a column of the data")
    return names
