"""Mergeable sketches behind profiles: moments, quantile compactor, HyperLogLog, frequent items.

Every sketch here is built chunk by chunk with numpy or pyarrow (no per-row
Python), merges with another of its kind (``merge`` returns a new sketch), and
turns into JSON-able data and back (``to_dict`` / ``from_dict``, arrays as
base64 of zlib-compressed bytes). Updates are deterministic, so the same data
in the same chunks always gives the same bytes.

Error bounds:

* `Moments`: count, min and max are exact; mean and variance are exact up to
  floating-point rounding (Chan et al.'s parallel update).
* `QuantileSketch`: a compactor sketch (the MRL/KLL family). Level ``h`` holds
  items of weight ``2**h``; a full level is sorted and every other item moves up.
  Each such halving can move the rank of any value by at most ``2**h``, so the
  sketch adds up those weights as it goes: ``rank_error`` is a *deterministic*
  bound on ``|estimated rank - true rank|`` for every value at once, and
  ``epsilon = rank_error / count`` bounds the error of the CDF. Until ``k``
  values have been seen nothing is halved and the sketch is exact.
* `HyperLogLog`: 2**14 registers, relative standard error 1.04 / 128 ≈ 0.8 %.
* `FrequencySketch`: exact counts while there are at most ``capacity``
  distinct values; beyond that Misra-Gries (mergeable, Agarwal et al. 2012):
  each kept count is low by at most ``error`` (≤ n / (capacity + 1)), and any
  value more frequent than ``error`` is kept.
"""

from __future__ import annotations

import base64
import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "FrequencySketch",
    "HyperLogLog",
    "Moments",
    "QuantileSketch",
    "decode_array",
    "encode_array",
    "hash_floats",
    "hash_strings",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
HashArray = npt.NDArray[np.uint64]

_MASK64 = 0xFFFFFFFFFFFFFFFF


def encode_array(values: npt.NDArray[Any]) -> str:
    """Base64 text of an array's zlib-compressed little-endian bytes."""
    raw = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<"), copy=False)
    return base64.b64encode(zlib.compress(raw.tobytes(), 1)).decode("ascii")


def decode_array(text: str, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """The array `encode_array` wrote, given its dtype."""
    raw = zlib.decompress(base64.b64decode(text))
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


# --- hashing ----------------------------------------------------------------


def _mix64(x: HashArray) -> HashArray:
    """The splitmix64 finaliser, in place: spreads any 64-bit input over all 64 bits."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def hash_floats(values: FloatArray) -> HashArray:
    """Stable 64-bit hashes of float64 values (-0.0 hashes as 0.0)."""
    normalised = np.asarray(values, dtype=np.float64) + 0.0  # a fresh array, hashed in place
    return _mix64(normalised.view(np.uint64))


def hash_strings(values: pa.Array) -> HashArray:
    """Stable 64-bit hashes of strings (SipHash with a fixed key, as pandas computes it)."""
    from pandas.util import hash_array

    objects = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
    return _mix64(hash_array(objects, categorize=False).astype(np.uint64))


def _coin(seed: int, level: int) -> int:
    """A deterministic fair-looking bit for the compaction at ``level`` after ``seed`` values."""
    x = (seed * 0x9E3779B97F4A7C15 + level * 0xD1B54A32D192ED03) & _MASK64
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & _MASK64
    return (x >> 63) & 1


# --- moments ----------------------------------------------------------------


@dataclass
class Moments:
    """Count, mean, sum of squared deviations, min and max of finite values."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add_sorted(self, values: FloatArray) -> None:
        """Fold in a chunk of finite values sorted ascending."""
        if values.size == 0:
            return
        mean = float(values.mean())
        deviations = values - mean
        m2 = float(np.square(deviations, out=deviations).sum())
        chunk = Moments(int(values.size), mean, m2, float(values[0]), float(values[-1]))
        self._absorb(chunk)

    def merge(self, other: Moments) -> Moments:
        """The moments of both inputs together."""
        out = Moments(self.count, self.mean, self.m2, self.minimum, self.maximum)
        out._absorb(other)
        return out

    def _absorb(self, other: Moments) -> None:
        if other.count == 0:
            return
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / n
        self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.count = n
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    @property
    def variance(self) -> float:
        """Population variance (ddof=0), NaN when empty."""
        return self.m2 / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0), NaN when empty."""
        return math.sqrt(self.variance) if self.count else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        if not self.count:
            return {"count": 0}
        keys = ("count", "mean", "m2", "minimum", "maximum")
        return {key: getattr(self, key) for key in keys}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Moments:
        """The moments `to_dict` wrote."""
        return cls(**data) if data.get("count") else cls()


# --- quantiles --------------------------------------------------------------


class QuantileSketch:
    """A mergeable compactor sketch of float64 values with a tracked, deterministic rank bound.

    Args:
        k: items a level holds before it is halved; memory is a few times ``k``
            float64 values and ``epsilon`` is about ``(1 + log2(chunks)) / k``.
    """

    def __init__(self, k: int = 4096) -> None:
        if k < 8:
            raise ValueError("k must be at least 8")
        self.k = k
        self.count = 0
        self.rank_error = 0
        self._levels: list[FloatArray] = []
        self._view: tuple[FloatArray, IntArray] | None = None

    @property
    def epsilon(self) -> float:
        """Bound on the CDF error of every estimate (rank_error / count)."""
        return self.rank_error / self.count if self.count else 0.0

    @property
    def is_exact(self) -> bool:
        """True while every value is kept with weight 1."""
        return self.rank_error == 0

    def add_sorted(self, values: FloatArray) -> None:
        """Fold in a chunk of finite values sorted ascending (the chunk is not kept)."""
        if values.size == 0:
            return
        seed = self.count
        self.count += int(values.size)
        level = 0
        while values.size > self.k:
            values, level = self._halve(values, level, seed)
        self._store(values, level)
        self._settle(seed)

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """A sketch of both inputs; bounds add, then any full level is halved."""
        out = QuantileSketch(max(self.k, other.k))
        out.count = self.count + other.count
        out.rank_error = self.rank_error + other.rank_error
        depth = max(len(self._levels), len(other._levels))
        for level in range(depth):
            parts = [s._levels[level] for s in (self, other) if level < len(s._levels)]
            out._store(np.sort(np.concatenate(parts)), level)
        out._settle(out.count)
        return out

    def _halve(self, values: FloatArray, level: int, seed: int) -> tuple[FloatArray, int]:
        """Keep every other item of a sorted array (an odd last one stays at this level)."""
        if values.size % 2:
            self._store(values[-1:], level)
            values = values[:-1]
        self.rank_error += 1 << level
        return values[_coin(seed, level) :: 2], level + 1

    def _store(self, values: FloatArray, level: int) -> None:
        """Add sorted items at ``level`` (copied: the caller's chunk is never kept)."""
        while len(self._levels) <= level:
            self._levels.append(np.empty(0, dtype=np.float64))
        current = self._levels[level]
        merged = np.concatenate([current, values]) if current.size else np.array(values)
        if current.size:
            merged.sort()
        self._levels[level] = merged
        self._view = None

    def _settle(self, seed: int) -> None:
        """Halve every full level, lowest first, so each holds fewer than ``k`` items."""
        level = 0
        while level < len(self._levels):
            if self._levels[level].size >= self.k:
                full = self._levels[level]
                self._levels[level] = np.empty(0, dtype=np.float64)
                promoted, up = self._halve(full, level, seed)
                self._store(promoted, up)
            level += 1

    def weighted(self) -> tuple[FloatArray, IntArray]:
        """All kept items sorted ascending, with their weights (which sum to ``count``)."""
        if self._view is None:
            values = np.concatenate([np.empty(0), *self._levels])
            weights = np.concatenate(
                [np.empty(0, np.int64)]
                + [np.full(v.size, 1 << h, dtype=np.int64) for h, v in enumerate(self._levels)]
            )
            order = np.argsort(values, kind="stable")
            self._view = (values[order], weights[order])
        return self._view

    def cdf(self, x: npt.ArrayLike) -> FloatArray:
        """Estimated share of values ≤ x (within ``epsilon`` of the truth)."""
        values, weights = self.weighted()
        cumulative = np.concatenate([[0], np.cumsum(weights)])
        ranks = cumulative[np.searchsorted(values, np.asarray(x, dtype=np.float64), "right")]
        return np.asarray(ranks / max(self.count, 1), dtype=np.float64)

    def quantile(self, q: npt.ArrayLike) -> FloatArray:
        """Estimated values at ranks ``q`` (in [0, 1]); rank within ``epsilon`` of ``q``."""
        values, weights = self.weighted()
        qs = np.clip(np.asarray(q, dtype=np.float64), 0.0, 1.0)
        if not values.size:
            return np.full(qs.shape, np.nan)
        cumulative = np.cumsum(weights)
        index = np.searchsorted(cumulative, qs * self.count, "left")
        return np.asarray(values[np.minimum(index, values.size - 1)], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {
            "k": self.k,
            "count": self.count,
            "rank_error": self.rank_error,
            "levels": [encode_array(level) for level in self._levels],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileSketch:
        """The sketch `to_dict` wrote."""
        sketch = cls(int(data["k"]))
        sketch.count = int(data["count"])
        sketch.rank_error = int(data["rank_error"])
        sketch._levels = [decode_array(text, np.float64) for text in data["levels"]]
        return sketch


# --- distinct values --------------------------------------------------------


class HyperLogLog:
    """HyperLogLog with 2**14 one-byte registers over 64-bit hashes."""

    P = 14
    _VALUE_BITS = 64 - P

    def __init__(self, registers: npt.NDArray[np.uint8] | None = None) -> None:
        size = 1 << self.P
        self.registers = np.zeros(size, np.uint8) if registers is None else registers.copy()

    def add_hashes(self, hashes: HashArray) -> None:
        """Fold in 64-bit hashes of values (duplicates change nothing)."""
        if not hashes.size:
            return
        index = (hashes >> np.uint64(self._VALUE_BITS)).view(np.int64)
        rest = (hashes & np.uint64((1 << self._VALUE_BITS) - 1)).astype(np.float64)
        # 50-bit integers are exact in float64: the exponent field is 1022 + bit length,
        # so rank = VALUE_BITS + 1 - bit length (capped for rest == 0, field 0).
        field = rest.view(np.uint64) >> np.uint64(52)
        rank = np.minimum(np.uint64(1023 + self._VALUE_BITS) - field, self._VALUE_BITS + 1)
        np.maximum.at(self.registers, index, rank.astype(np.uint8))

    def merge(self, other: HyperLogLog) -> HyperLogLog:
        """The sketch of the union."""
        return HyperLogLog(np.maximum(self.registers, other.registers))

    def estimate(self) -> float:
        """Estimated number of distinct values (linear counting when small)."""
        m = float(self.registers.size)
        alpha = 0.7213 / (1.0 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -self.registers.astype(np.int64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return m * math.log(m / zeros)
        return raw

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {"p": self.P, "registers": encode_array(self.registers)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HyperLogLog:
        """The sketch `to_dict` wrote."""
        if int(data["p"]) != cls.P:
            raise ValueError(f"HyperLogLog precision {data['p']} is not {cls.P}")
        return cls(decode_array(data["registers"], np.uint8))


# --- frequent values --------------------------------------------------------


class FrequencySketch:
    """Counts per distinct value: exact up to ``capacity`` values, then Misra-Gries.

    Args:
        capacity: how many distinct values are counted.
        exact_only: give up (``overflowed``) instead of approximating beyond capacity.
    """

    def __init__(self, capacity: int, *, exact_only: bool = False) -> None:
        self.capacity = capacity
        self.exact_only = exact_only
        self.values: pa.Array | None = None
        self.counts: IntArray = np.empty(0, np.int64)
        self.error = 0
        self.overflowed = False

    @property
    def exact(self) -> bool:
        """True when every count is the true count of its value."""
        return self.error == 0 and not self.overflowed

    def add(self, values: pa.Array, counts: IntArray) -> None:
        """Fold in distinct values (no nulls) with how often each occurred."""
        if self.overflowed:
            return
        if self.values is not None:
            values = pa.concat_arrays([self.values, values.cast(self.values.type)])
            counts = np.concatenate([self.counts, counts])
        self._set(values, counts)

    def mark_overflowed(self) -> None:
        """Forget the counts: there were more distinct values than an exact table may hold."""
        self.overflowed = True
        self.values = None
        self.counts = np.empty(0, np.int64)

    def merge(self, other: FrequencySketch) -> FrequencySketch:
        """The counts of both inputs (errors add, then the table is cut to capacity)."""
        out = FrequencySketch(max(self.capacity, other.capacity), exact_only=self.exact_only)
        out.error = self.error + other.error
        if self.overflowed or other.overflowed:
            out.mark_overflowed()
            return out
        for part in (self, other):
            if part.values is not None:
                out.add(part.values, part.counts)
        return out

    def _set(self, values: pa.Array, counts: IntArray) -> None:
        table = pa.table({"v": values, "c": pa.array(counts, pa.int64())})
        grouped = table.group_by("v", use_threads=False).aggregate([("c", "sum")])
        order = pc.sort_indices(grouped, [("c_sum", "descending"), ("v", "ascending")])
        grouped = grouped.take(order)
        counts = grouped.column("c_sum").to_numpy().astype(np.int64)
        values = grouped.column("v").combine_chunks()
        if len(values) > self.capacity:
            if self.exact_only:
                self.mark_overflowed()
                return
            values, counts = self._reduce(values, counts)
        self.values, self.counts = values, counts

    def _reduce(self, values: pa.Array, counts: IntArray) -> tuple[pa.Array, IntArray]:
        """Misra-Gries: take the (capacity+1)-th largest count off all; drop what is left ≤ 0."""
        cut = int(counts[self.capacity])
        self.error += cut
        keep = int(np.count_nonzero(counts > cut))
        return values.slice(0, keep), counts[:keep] - cut

    def top(self, n: int) -> list[tuple[Any, int]]:
        """The ``n`` most frequent values with their (lower-bound) counts, most frequent first."""
        if self.values is None:
            return []
        return list(zip(self.values.slice(0, n).to_pylist(), self.counts[:n].tolist(), strict=True))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (values as a JSON list)."""
        data: dict[str, Any] = {
            "capacity": self.capacity,
            "exact_only": self.exact_only,
            "error": self.error,
            "overflowed": self.overflowed,
        }
        if self.values is not None:
            data["type"] = "float64" if pa.types.is_floating(self.values.type) else "string"
            data["values"] = self.values.to_pylist()
            data["counts"] = encode_array(self.counts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrequencySketch:
        """The sketch `to_dict` wrote."""
        sketch = cls(int(data["capacity"]), exact_only=bool(data["exact_only"]))
        sketch.error = int(data["error"])
        sketch.overflowed = bool(data["overflowed"])
        if "values" in data:
            kind = pa.float64() if data["type"] == "float64" else pa.large_string()
            sketch.values = pa.array(data["values"], kind)
            sketch.counts = decode_array(data["counts"], np.int64)
        return sketch
