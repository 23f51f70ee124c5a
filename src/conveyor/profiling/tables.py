"""Tabular input (pandas, polars, pyarrow, Parquet) as typed columns or row batches."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Column", "Kind", "Source", "open_source"]

Kind = Literal["numeric", "categorical", "boolean", "datetime"]
FloatArray = npt.NDArray[np.float64]

_SECONDS_PER_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@dataclass(frozen=True)
class Column:
    """One column's values: numbers as float64 (NaN where missing) or strings with nulls.

    Attributes:
        name: the column's name.
        kind: numeric, categorical, boolean or datetime (datetimes as epoch seconds).
        numbers: the values of a numeric or datetime column.
        strings: the values of a categorical or boolean column ("true"/"false").
        integer: the column's type was an integer type.
    """

    name: str
    kind: Kind
    numbers: FloatArray | None = None
    strings: pa.ChunkedArray | None = None
    integer: bool = False

    def __len__(self) -> int:
        if self.numbers is not None:
            return int(self.numbers.size)
        return len(self.strings) if self.strings is not None else 0


def arrow_kind(kind: pa.DataType) -> Kind | None:
    """The profiling kind of an arrow type, or None for types that are not profiled."""
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "numeric"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "datetime"
    text = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    if any(test(kind) for test in text) or pa.types.is_dictionary(kind) or pa.types.is_null(kind):
        return "categorical"
    return None


def _chunked(values: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def _seconds(values: pa.ChunkedArray) -> FloatArray:
    kind = values.type
    if pa.types.is_date32(kind):
        scale = 86400.0
    elif pa.types.is_date64(kind):
        scale = 1e-3
    else:
        scale = _SECONDS_PER_UNIT[kind.unit]
    ints = values.cast(pa.int64()).cast(pa.float64())
    return np.asarray(ints.to_numpy(), dtype=np.float64) * scale


def _strings(values: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    return values.cast(pa.large_string())


def column_from_arrow(name: str, values: pa.Array | pa.ChunkedArray) -> Column:
    """A `Column` over arrow values (raises ValidationError for types that are not monitored)."""
    chunked = _chunked(values)
    kind = arrow_kind(chunked.type)
    if kind is None:
        raise ValidationError(name, f"type {chunked.type} is not monitored")
    if kind == "numeric":
        numbers = np.asarray(chunked.cast(pa.float64()).to_numpy(), dtype=np.float64)
        return Column(name, kind, numbers=numbers, integer=pa.types.is_integer(chunked.type))
    if kind == "datetime":
        return Column(name, kind, numbers=_seconds(chunked))
    if kind == "boolean":
        return Column(name, kind, strings=chunked.cast(pa.large_string()))
    return Column(name, kind, strings=_strings(chunked))


class Source(ABC):
    """Columns of one table, loaded one at a time or streamed in row batches."""

    names: tuple[str, ...]

    @property
    @abstractmethod
    def num_rows(self) -> int:
        """How many rows the table has."""

    @abstractmethod
    def kind(self, name: str) -> Kind | None:
        """The column's kind, or None when its type is not monitored."""

    @abstractmethod
    def column(self, name: str) -> Column:
        """All values of one column."""

    @abstractmethod
    def batches(self, rows: int, names: Sequence[str]) -> Iterator[Source]:
        """The table in consecutive slices of at most ``rows`` rows, with these columns."""

    def type_name(self, name: str) -> str:
        """The column's type in words, for messages."""
        return self.kind(name) or "unsupported"


class ArrowSource(Source):
    """A pyarrow Table (polars frames come here through ``to_arrow``)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.names = tuple(table.column_names)
        _check_unique(self.names)

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    def kind(self, name: str) -> Kind | None:
        return arrow_kind(self.table.schema.field(name).type)

    def type_name(self, name: str) -> str:
        return str(self.table.schema.field(name).type)

    def column(self, name: str) -> Column:
        return column_from_arrow(name, self.table.column(name))

    def batches(self, rows: int, names: Sequence[str]) -> Iterator[Source]:
        table = self.table.select(list(names))
        for start in range(0, max(table.num_rows, 1), rows):
            yield ArrowSource(table.slice(start, rows))


class PandasSource(Source):
    """A pandas DataFrame; float columns are read without copying."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.names = tuple(str(name) for name in frame.columns)
        _check_unique(self.names)
        self._kinds: dict[str, Kind | None] = {}

    @property
    def num_rows(self) -> int:
        return len(self.frame)

    def _series(self, name: str) -> pd.Series:
        return self.frame.iloc[:, self.names.index(name)]

    def kind(self, name: str) -> Kind | None:
        if name not in self._kinds:
            self._kinds[name] = _pandas_kind(self._series(name))
        return self._kinds[name]

    def type_name(self, name: str) -> str:
        return str(self._series(name).dtype)

    def column(self, name: str) -> Column:
        series = self._series(name)
        kind = self.kind(name)
        if kind == "numeric" and series.dtype.kind in "fiu":
            numbers = series.to_numpy(dtype=np.float64, copy=False)
            return Column(name, kind, numbers=numbers, integer=series.dtype.kind in "iu")
        if kind == "numeric":
            return Column(name, kind, numbers=series.to_numpy(dtype=np.float64, na_value=np.nan))
        if kind is None:
            raise ValidationError(name, f"type {series.dtype} is not monitored")
        return column_from_arrow(name, _pandas_arrow(name, series))

    def batches(self, rows: int, names: Sequence[str]) -> Iterator[Source]:
        frame = self.frame.iloc[:, [self.names.index(n) for n in names]]
        for start in range(0, max(len(frame), 1), rows):
            yield PandasSource(frame.iloc[start : start + rows])


def _pandas_kind(series: pd.Series) -> Kind | None:
    from pandas.api import types

    dtype = series.dtype
    if types.is_bool_dtype(dtype):
        return "boolean"
    if types.is_numeric_dtype(dtype):
        return "numeric" if not types.is_complex_dtype(dtype) else None
    if types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, types.CategoricalDtype) or types.is_string_dtype(dtype):
        return "categorical"
    return None if types.is_timedelta64_dtype(dtype) else "categorical"


def _pandas_arrow(name: str, series: pd.Series) -> pa.Array | pa.ChunkedArray:
    try:
        values = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        values = None
    if values is None or arrow_kind(values.type) is None:
        # Mixed or odd objects: compare them by their text, as a categorical.
        values = pa.array(series.astype("string"), from_pandas=True)
    return values


class ParquetSource(Source):
    """A Parquet file, read one column (of one row group, when streaming) at a time."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        # Without pre-buffering a read holds one column chunk, not the whole row group.
        self._file = pq.ParquetFile(path, pre_buffer=False)
        self._lock = threading.Lock()  # one reader, shared by the column threads
        self.schema = self._file.schema_arrow
        self.names = tuple(self.schema.names)
        _check_unique(self.names)

    @property
    def num_rows(self) -> int:
        return int(self._file.metadata.num_rows)

    def kind(self, name: str) -> Kind | None:
        return arrow_kind(self.schema.field(name).type)

    def type_name(self, name: str) -> str:
        return str(self.schema.field(name).type)

    def column(self, name: str) -> Column:
        with self._lock:
            table = self._file.read(columns=[name], use_threads=False)
        return column_from_arrow(name, table.column(0))

    def read_row_group(self, index: int, name: str) -> Column:
        """One column of one row group."""
        with self._lock:
            table = self._file.read_row_group(index, columns=[name], use_threads=False)
        return column_from_arrow(name, table.column(0))

    def batches(self, rows: int, names: Sequence[str]) -> Iterator[Source]:
        """One batch per row group (``rows`` does not split them), read column by column."""
        groups = self._file.metadata.num_row_groups
        if not groups:
            yield ArrowSource(self.schema.empty_table().select(list(names)))
        for index in range(groups):
            yield _RowGroup(self, index, tuple(names))


class _RowGroup(Source):
    """A row group of a Parquet file whose columns are read when asked for."""

    def __init__(self, parquet: ParquetSource, index: int, names: tuple[str, ...]) -> None:
        self.parquet = parquet
        self.index = index
        self.names = names

    @property
    def num_rows(self) -> int:
        return int(self.parquet._file.metadata.row_group(self.index).num_rows)

    def kind(self, name: str) -> Kind | None:
        return self.parquet.kind(name)

    def column(self, name: str) -> Column:
        return self.parquet.read_row_group(self.index, name)

    def batches(self, rows: int, names: Sequence[str]) -> Iterator[Source]:
        yield _RowGroup(self.parquet, self.index, tuple(names))


def _check_unique(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValidationError(name, "column names must be unique")
        seen.add(name)


def open_source(data: Any) -> Source:
    """A `Source` over a pandas or polars DataFrame, a pyarrow Table or a Parquet path.

    Raises:
        ValidationError: for any other kind of object, or a path that is not a file.
    """
    if isinstance(data, Source):
        return data
    if isinstance(data, pa.Table):
        return ArrowSource(data)
    if isinstance(data, pa.RecordBatch):
        return ArrowSource(pa.Table.from_batches([data]))
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        if not path.is_file():
            raise ValidationError("data", f"{path} is not a file")
        return ParquetSource(path)
    module = type(data).__module__.split(".")[0]
    if module == "pandas" and hasattr(data, "iloc"):
        return PandasSource(data)
    if module == "polars" and hasattr(data, "to_arrow"):
        return ArrowSource(data.to_arrow())
    raise ValidationError(
        "data", "must be a pandas or polars DataFrame, a pyarrow Table or a Parquet file path"
    )


def count_values(strings: pa.ChunkedArray) -> tuple[pa.Array, npt.NDArray[np.int64], int]:
    """Distinct non-null values, their counts, and the number of nulls."""
    counted = pc.value_counts(strings)
    values = counted.field("values")
    counts = np.asarray(counted.field("counts").to_numpy(), dtype=np.int64)
    valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
    nulls = int(counts[~valid].sum())
    if nulls:
        values = values.filter(pa.array(valid))
        counts = counts[valid]
    return values, counts, nulls
