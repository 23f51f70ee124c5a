"""Check: data against a `Schema`, column by column with vectorised pandas operations."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from conveyor.core.step import step
from conveyor.lifecycle._extract import Dataset, as_frame
from conveyor.lifecycle.schema import Anomaly, AnomalyReport, ColumnSchema, Rule, Schema

__all__ = ["EXAMPLES", "check", "conforms"]

EXAMPLES = 5
# Text columns may mix in other values; a column of only numbers (say) is a type change.
_STRING_INFERRED = ("string", "empty", "bytes", "mixed", "mixed-integer", "mixed-integer-float")


@step
def check(data: pd.DataFrame | Dataset, schema: Schema) -> AnomalyReport:
    """Find where the data breaks the schema; anomalies are results, not exceptions.

    Rules: missing_column, extra_column, type_change, out_of_range, unseen_category,
    null_rate_jump and required_nulls, each with the severity the schema gives it.

    Args:
        data: the data to check.
        schema: the expectations, from `analyze` or `Schema.load`.

    Returns:
        The report: ``report.ok`` is False when an anomaly has severity fail.
    """
    frame = as_frame(data)
    names = [str(name) for name in frame.columns]
    anomalies: list[Anomaly] = []
    for name, column in schema.columns.items():
        if name not in names:
            anomalies.append(_anomaly(schema, name, "missing_column", 0, [], "is missing"))
            continue
        series = frame.iloc[:, names.index(name)]
        anomalies += _check_column(schema, name, column, series)
    for position, name in enumerate(names):
        if name not in schema.columns:
            series = frame.iloc[:, position]
            examples = _plain(series.dropna().unique()[:EXAMPLES])
            text = "is not in the schema"
            anomalies.append(_anomaly(schema, name, "extra_column", len(series), examples, text))
    return AnomalyReport(len(frame), anomalies)


def _anomaly(
    schema: Schema, column: str, rule: Rule, count: int, examples: list[Any], message: str
) -> Anomaly:
    return Anomaly(column, rule, schema.severity_of(column, rule), count, examples, message)


def _check_column(
    schema: Schema, name: str, column: ColumnSchema, series: pd.Series
) -> list[Anomaly]:
    found: list[Anomaly] = []
    missing = series.isna().to_numpy()
    found += _check_nulls(schema, name, column, series, missing)
    fits, bad = conforms(series, column.type)
    if not fits:
        values = series[bad] if bad is not None else series[~missing]
        examples = _plain(pd.unique(values.to_numpy())[:EXAMPLES])
        text = f"values of dtype {series.dtype} where {column.type} is expected"
        found.append(_anomaly(schema, name, "type_change", len(values), examples, text))
        return found  # ranges and categories mean nothing for values of another type
    if column.type in ("int", "float") and (column.min is not None or column.max is not None):
        found += _check_range(schema, name, column, series)
    if column.categories is not None:
        found += _check_categories(schema, name, column.categories, series, missing)
    return found


def _check_nulls(
    schema: Schema, name: str, column: ColumnSchema, series: pd.Series, missing: np.ndarray
) -> list[Anomaly]:
    nulls = int(missing.sum())
    if not nulls:
        return []
    rows = _plain(series.index[missing][:EXAMPLES])
    if column.required:
        text = f"{nulls} missing value(s) where none may be (rows shown)"
        return [_anomaly(schema, name, "required_nulls", nulls, rows, text)]
    rate = nulls / len(series)
    limit = column.null_rate + schema.null_rate_tolerance
    if rate <= limit:
        return []
    text = (
        f"null rate {rate:.3f} above {limit:.3f} "
        f"(seen {column.null_rate:.3f} + tolerance {schema.null_rate_tolerance:.3f}; rows shown)"
    )
    return [_anomaly(schema, name, "null_rate_jump", nulls, rows, text)]


def _check_range(
    schema: Schema, name: str, column: ColumnSchema, series: pd.Series
) -> list[Anomaly]:
    values = _numbers(series)
    low = -math.inf if column.min is None else column.min
    high = math.inf if column.max is None else column.max
    with np.errstate(invalid="ignore"):
        outside = (values < low) | (values > high)  # NaN compares False: nulls are not here
    count = int(outside.sum())
    if not count:
        return []
    examples = _plain(series[outside].unique()[:EXAMPLES])
    text = f"{count} value(s) outside [{column.min}, {column.max}]"
    return [_anomaly(schema, name, "out_of_range", count, examples, text)]


def _check_categories(
    schema: Schema, name: str, categories: list[str], series: pd.Series, missing: np.ndarray
) -> list[Anomaly]:
    texts = series if isinstance(series.dtype, pd.StringDtype) else series.astype("str")
    unseen = ~texts.isin(categories).to_numpy() & ~missing
    count = int(unseen.sum())
    if not count:
        return []
    examples = _plain(pd.unique(texts[unseen].to_numpy())[:EXAMPLES])
    text = f"{count} value(s) not among the {len(categories)} allowed categories"
    return [_anomaly(schema, name, "unseen_category", count, examples, text)]


def conforms(series: pd.Series, kind: str) -> tuple[bool, np.ndarray | None]:
    """Whether a column's values are of a schema type; if not, a mask of the offenders.

    An ``int`` column may arrive as floats (pandas makes an int column with missing
    values float) as long as every value is whole; a ``float`` column accepts ints.
    The mask is None when the whole column (its dtype) is of the wrong type.
    """
    dtype = series.dtype
    numeric = ptypes.is_numeric_dtype(dtype) and not ptypes.is_bool_dtype(dtype)
    if kind == "int":
        if not numeric:
            return False, None
        if ptypes.is_integer_dtype(dtype):
            return True, None
        values = _numbers(series)
        with np.errstate(invalid="ignore"):
            fractional = np.isfinite(values) & (values != np.floor(values))
        return (False, fractional) if fractional.any() else (True, None)
    if kind == "float":
        return numeric, None
    if kind == "bool":
        return _is_bool(series), None
    if kind == "datetime":
        return _is_datetime(series), None
    return _is_text(series), None


def _is_bool(series: pd.Series) -> bool:
    if ptypes.is_bool_dtype(series.dtype):
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in (
        "boolean",
        "empty",
    )


def _is_datetime(series: pd.Series) -> bool:
    if ptypes.is_datetime64_any_dtype(series.dtype):
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in (
        "datetime",
        "datetime64",
        "empty",
    )


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype | pd.StringDtype):
        return True
    if dtype is not np.dtype(object):
        return False
    return pd.api.types.infer_dtype(series, skipna=True) in _STRING_INFERRED


def _numbers(series: pd.Series) -> np.ndarray:
    return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def _plain(values: Any) -> list[Any]:
    """Values as plain Python for reports and JSON (numpy scalars, timestamps as text)."""
    out: list[Any] = []
    for value in list(values):
        if isinstance(value, np.generic):
            value = value.item()
        moment = isinstance(value, pd.Timestamp | dt.datetime | dt.date | np.datetime64)
        if moment or (isinstance(value, float) and not math.isfinite(value)):
            value = str(value)
        out.append(value)
    return out
