"""Analyze: a dataset's `Profile` (``conveyor.profiling``) and the `Schema` inferred from it."""

from __future__ import annotations

import math

import pandas as pd
from pandas.api import types as ptypes

from conveyor.core.step import step
from conveyor.errors import ValidationError
from conveyor.lifecycle._extract import Dataset, as_frame
from conveyor.lifecycle.schema import (
    DEFAULT_NULL_RATE_TOLERANCE,
    DEFAULT_SEVERITY,
    ColumnSchema,
    Schema,
    Type,
)
from conveyor.profiling import ColumnProfile, Profile, profile

__all__ = ["MAX_CATEGORIES", "analyze", "infer_schema"]

MAX_CATEGORIES = 50


@step(outputs=("profile", "schema"))
def analyze(
    data: pd.DataFrame | Dataset,
    max_categories: int = MAX_CATEGORIES,
    range_slack: float = 0.0,
    null_rate_tolerance: float = DEFAULT_NULL_RATE_TOLERANCE,
) -> tuple[Profile, Schema]:
    """Profile the data and infer the schema it meets, as TFDV does.

    Each column gets a type (int, float, bool, string, category, datetime), whether
    it is required (no nulls seen), its null rate, a range for numbers and, for text
    columns with at most ``max_categories`` distinct values, the allowed categories.

    Args:
        data: the data.
        max_categories: text columns with at most this many distinct values become
            ``category`` columns listing them; others are ``string``.
        range_slack: widen each range by this share of its width on both sides
            (0.1 turns [0, 100] into [-10, 110]); int ranges stay whole numbers.
        null_rate_tolerance: how far a null rate may rise before ``null_rate_jump``.

    Returns:
        The profile (``conveyor.profiling.Profile``) and the schema.

    Raises:
        ValidationError: for data that is not a table or arguments out of range.
    """
    if max_categories < 0:
        raise ValidationError("max_categories", "must not be negative")
    if range_slack < 0:
        raise ValidationError("range_slack", "must not be negative")
    if not 0 <= null_rate_tolerance <= 1:
        raise ValidationError("null_rate_tolerance", "must be between 0 and 1")
    frame = as_frame(data)
    _check_names(frame)
    stats = profile(frame)
    schema = infer_schema(
        stats,
        frame,
        max_categories=max_categories,
        range_slack=range_slack,
        null_rate_tolerance=null_rate_tolerance,
    )
    return stats, schema


def infer_schema(
    stats: Profile,
    frame: pd.DataFrame,
    *,
    max_categories: int = MAX_CATEGORIES,
    range_slack: float = 0.0,
    null_rate_tolerance: float = DEFAULT_NULL_RATE_TOLERANCE,
) -> Schema:
    """The schema of ``frame`` from its profile (see `analyze` for the arguments)."""
    columns: dict[str, ColumnSchema] = {}
    for position, name in enumerate(str(c) for c in frame.columns):
        series = frame.iloc[:, position]
        column = stats.columns.get(name)
        if column is None:  # a type the profiler leaves out (timedelta, complex…)
            nulls = int(series.isna().sum())
            columns[name] = _column("string", nulls, len(series))
            continue
        columns[name] = _infer_column(series, column, max_categories, range_slack)
    return Schema(columns, dict(DEFAULT_SEVERITY), null_rate_tolerance)


def _infer_column(
    series: pd.Series, stats: ColumnProfile, max_categories: int, range_slack: float
) -> ColumnSchema:
    kind = _type_of(series, stats, max_categories)
    column = _column(kind, stats.nulls, stats.count)
    if kind in ("int", "float") and stats.moments.count:
        low, high = float(stats.moments.minimum), float(stats.moments.maximum)
        column.min, column.max = _widen(low, high, range_slack, whole=kind == "int")
    if kind == "category" and stats.values.exact and stats.distinct <= max_categories:
        column.categories = sorted(str(value) for value, _ in stats.top(max_categories))
    return column


def _column(kind: Type, nulls: int, count: int) -> ColumnSchema:
    rate = round(nulls / count, 4) if count else 0.0
    # Rounding must not turn a few nulls into a rate of 0 that the next check flags.
    rate = max(rate, 0.0001) if nulls else rate
    return ColumnSchema(kind, required=nulls == 0, null_rate=rate)


def _type_of(series: pd.Series, stats: ColumnProfile, max_categories: int) -> Type:
    dtype = series.dtype
    if stats.kind == "boolean":
        return "bool"
    if stats.kind == "datetime":
        return "datetime"
    if stats.kind == "numeric":
        return "int" if ptypes.is_integer_dtype(dtype) else "float"
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    few = stats.values.exact and 0 < stats.distinct <= max_categories
    return "category" if few else "string"


def _widen(low: float, high: float, slack: float, *, whole: bool) -> tuple[float, float]:
    margin = (high - low) * slack
    low, high = low - margin, high + margin
    if whole:
        return math.floor(low), math.ceil(high)
    return low, high


def _check_names(frame: pd.DataFrame) -> None:
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise ValidationError("data", f"column names must be unique; repeated: {duplicated}")
