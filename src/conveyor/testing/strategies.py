"""Hypothesis strategies for property-based tests of feature logic: frames that meet a schema.

Example::

    from hypothesis import given
    from conveyor.testing.strategies import frames

    @given(frames(SCHEMA, max_rows=30))
    def test_features_never_make_nan(frame):
        assert_no_nan(build_features(frame), name="features")

Every frame drawn passes `conveyor.lifecycle.check` against the schema with no
failing anomaly: the columns and types it names, nulls only where it allows them
(and no more often than its null rate and tolerance allow), numbers within its
ranges, text among its categories.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd
    from hypothesis.strategies import DrawFn, SearchStrategy

    from conveyor.lifecycle.schema import ColumnSchema, Schema

__all__ = ["column_values", "frames"]

# Bounds for numbers when the schema gives none: wide, but far from overflow in features.
DEFAULT_BOUND = 1e9


def column_values(column: ColumnSchema) -> SearchStrategy[Any]:
    """Single non-null values that ``column`` allows."""
    from hypothesis import strategies as st

    if column.type == "int":
        low = int(column.min) if column.min is not None else -int(DEFAULT_BOUND)
        high = int(column.max) if column.max is not None else int(DEFAULT_BOUND)
        return st.integers(low, high)
    if column.type == "float":
        low_f = column.min if column.min is not None else -DEFAULT_BOUND
        high_f = column.max if column.max is not None else DEFAULT_BOUND
        return st.floats(low_f, high_f, allow_nan=False, allow_infinity=False)
    if column.type == "bool":
        return st.booleans()
    if column.type == "datetime":
        return st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1))
    if column.categories is not None:
        if not column.categories:
            raise ValidationError("categories", "a column with no allowed category draws nothing")
        return st.sampled_from(column.categories)
    return st.text(min_size=1, max_size=12)


def frames(
    schema: Schema,
    *,
    min_rows: int = 1,
    max_rows: int = 20,
    columns: Sequence[str] | None = None,
    nulls: bool = True,
) -> SearchStrategy[pd.DataFrame]:
    """DataFrames whose every row meets ``schema`` (see the module docstring).

    Args:
        schema: the frozen schema (`Schema`, e.g. ``Schema.load("schema.yaml")``).
        min_rows: the fewest rows.
        max_rows: the most rows.
        columns: only these columns of the schema (all by default, in its order).
        nulls: draw missing values in the columns that allow them.

    Raises:
        ValidationError: the row bounds are out of order, or ``columns`` names a column
            the schema lacks.
    """
    from hypothesis import strategies as st

    if not 0 <= min_rows <= max_rows:
        raise ValidationError("min_rows", "must be from 0 up to max_rows")
    names = list(schema.columns) if columns is None else list(columns)
    for name in names:
        schema[name]  # raises ValidationError naming an unknown column

    @st.composite
    def draw_frame(draw: DrawFn) -> pd.DataFrame:
        size = draw(st.integers(min_rows, max_rows))
        data = {name: draw(_values(schema, name, size, nulls)) for name in names}
        return _frame(schema, data, names)

    return draw_frame()


def _values(schema: Schema, name: str, size: int, nulls: bool) -> SearchStrategy[list[Any]]:
    from hypothesis import strategies as st

    column = schema.columns[name]
    values = st.lists(column_values(column), min_size=size, max_size=size)
    if not nulls or column.required or size == 0:
        return values
    # No more nulls than the rate seen plus the tolerance, so null_rate_jump never fires.
    most = int((column.null_rate + schema.null_rate_tolerance) * size)
    holes = st.sets(st.integers(0, size - 1), max_size=most)
    return st.tuples(values, holes).map(lambda pair: _punch(pair[0], pair[1]))


def _punch(values: list[Any], holes: set[int]) -> list[Any]:
    return [None if i in holes else v for i, v in enumerate(values)]


def _frame(schema: Schema, data: dict[str, list[Any]], names: list[str]) -> pd.DataFrame:
    import pandas as pd

    series = {}
    for name in names:
        kind = schema.columns[name].type
        dtype = {"int": "Int64", "float": "float64", "bool": "boolean"}.get(kind)
        if kind == "datetime":
            series[name] = pd.Series(pd.to_datetime(data[name]), dtype="datetime64[ns]")
        elif kind == "category":
            series[name] = pd.Series(data[name], dtype="object").astype("category")
        elif dtype is not None:
            series[name] = pd.Series(data[name], dtype=dtype)
        else:
            series[name] = pd.Series(data[name], dtype="object")
    return pd.DataFrame(series, columns=names)
