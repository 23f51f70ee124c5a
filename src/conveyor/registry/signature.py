"""Signatures: what a model takes, inferred from its input example and checked on every call.

A DataFrame signature names each column with its dtype, whether nulls were seen and,
for categoricals (and string columns with few values), the categories. A tensor
signature (from a numpy example) gives the dtype and the shape past the rows.
Input is checked against it: a missing column or a dtype of the wrong kind is a
`ValidationError` naming the column and the rule; extra columns are dropped and the
order is the signature's.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from conveyor.core.registry import ColumnSpec, Signature
from conveyor.errors import ValidationError

__all__ = [
    "Example",
    "as_example",
    "decode_output",
    "encode_output",
    "example_from_parquet",
    "example_to_parquet",
    "infer_signature",
    "outputs_match",
    "prepare_input",
]

Example: TypeAlias = pd.DataFrame | np.ndarray
_FEW = 20  # a string column with at most this many distinct values records them
# Which kinds of input each kind of signature column accepts (then casts to its dtype).
_ACCEPTS = {
    "integer": {"integer"},
    "float": {"float", "integer"},
    "bool": {"bool"},
    "string": {"string", "category"},
    "category": {"category", "string"},
    "datetime": {"datetime"},
}


def as_example(data: Any, what: str = "input") -> Example:
    """``data`` as a DataFrame or an array: polars frames, mappings and lists are converted."""
    if isinstance(data, pd.DataFrame | np.ndarray):
        return data
    if type(data).__module__.startswith("polars") and hasattr(data, "to_pandas"):
        return data.to_pandas()
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, Mapping) or (isinstance(data, list) and data and isinstance(data[0], dict)):
        return pd.DataFrame(data)
    if isinstance(data, list | tuple):
        return np.asarray(data)
    raise ValidationError(
        what, f"must be a pandas DataFrame or a numpy array, got {type(data).__name__}"
    )


# -- inference -------------------------------------------------------------


def infer_signature(example: Example) -> Signature:
    """The signature of an input example."""
    if isinstance(example, np.ndarray):
        if example.ndim == 0 or len(example) == 0:
            raise ValidationError("input_example", "must hold at least one row")
        return Signature("tensor", dtype=str(example.dtype), shape=(None, *example.shape[1:]))
    if example.empty:
        raise ValidationError("input_example", "must hold at least one row and one column")
    return Signature("dataframe", tuple(_column_spec(n, example[n]) for n in example.columns))


def _column_spec(name: object, column: pd.Series) -> ColumnSpec:
    if not isinstance(name, str):
        raise ValidationError("input_example", f"column names must be strings, got {name!r}")
    nullable = bool(column.isna().any())
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = tuple(_plain(c) for c in dtype.categories)
        return ColumnSpec(name, "category", nullable, categories, bool(dtype.ordered))
    kind = _kind(column)
    if kind == "string":
        values = column.dropna().unique()
        few = tuple(sorted(str(v) for v in values)) if len(values) <= _FEW else None
        return ColumnSpec(name, "string", nullable, few)
    return ColumnSpec(name, "object" if kind == "object" else str(dtype), nullable)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _kind(column: pd.Series | np.ndarray) -> str:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if dtype == np.dtype(object):
        inferred = pd.api.types.infer_dtype(column, skipna=True)
        return "string" if inferred in ("string", "empty") else "object"
    return "string" if pd.api.types.is_string_dtype(dtype) else "object"


@functools.cache
def _kind_of(dtype: str) -> str:
    if dtype in ("string", "category", "object"):
        return dtype
    return _kind(pd.Series([], dtype=dtype))


# -- checking input --------------------------------------------------------


def prepare_input(signature: Signature, data: Any) -> Example:
    """``data`` checked against ``signature`` and cast to its dtypes, in its column order.

    Raises:
        ValidationError: a column is missing or of the wrong kind (naming it and the
            rule), or an array has the wrong shape or dtype.
    """
    example = as_example(data)
    if signature.kind == "tensor":
        return _prepare_tensor(signature, example)
    if isinstance(example, np.ndarray):
        example = _frame_from_array(signature, example)
    if _already_typed(signature, example):
        # The common serving case: numeric columns of the trained dtypes; select them at once
        # instead of building a Series per column (a millisecond per request).
        return example[[spec.name for spec in signature.columns]]
    columns = {spec.name: _prepare_column(spec, example) for spec in signature.columns}
    return pd.DataFrame(columns, index=example.index)


_PASS_THROUGH = ("integer", "float", "bool")


def _already_typed(signature: Signature, frame: pd.DataFrame) -> bool:
    """Whether every column is present with exactly its signature's numeric or bool dtype."""
    dtypes = frame.dtypes
    return all(
        spec.name in dtypes.index
        and _kind_of(spec.dtype) in _PASS_THROUGH
        and str(dtypes[spec.name]) == spec.dtype
        for spec in signature.columns
    )


def _frame_from_array(signature: Signature, array: np.ndarray) -> pd.DataFrame:
    names = [spec.name for spec in signature.columns]
    if array.ndim != 2 or array.shape[1] != len(names):
        raise ValidationError(
            "input",
            f"this model takes a table with the columns {', '.join(names)}; "
            f"got an array of shape {array.shape}",
        )
    return pd.DataFrame(array, columns=names)


def _prepare_column(spec: ColumnSpec, frame: pd.DataFrame) -> pd.Series:
    if spec.name not in frame.columns:
        raise ValidationError(
            f"column {spec.name!r}", f"is required by the model's signature (dtype {spec.dtype})"
        )
    column = frame[spec.name]
    expected, got = _kind_of(spec.dtype), _kind(column)
    if expected == "float" and column.dtype == np.dtype(object) and column.isna().all():
        # JSON has no NaN: a float column whose values are all missing arrives as nulls.
        return pd.Series(np.nan, index=column.index, dtype=spec.dtype, name=spec.name)
    if expected != "object" and got not in _ACCEPTS[expected]:
        raise ValidationError(
            f"column {spec.name!r}", f"must be {_KIND_WORDS[expected]}, got dtype {column.dtype}"
        )
    if expected == "category":
        return _as_category(spec, column)
    if expected in ("integer", "float", "bool", "datetime") and str(column.dtype) != spec.dtype:
        try:
            return column.astype(spec.dtype)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"column {spec.name!r}", f"cannot be read as {spec.dtype}: {exc}"
            ) from exc
    return column


_KIND_WORDS = {
    "integer": "integers (an int dtype)",
    "float": "numbers (a float or int dtype)",
    "bool": "booleans",
    "string": "strings",
    "category": "strings or a categorical",
    "datetime": "datetimes",
}


def _as_category(spec: ColumnSpec, column: pd.Series) -> pd.Series:
    categories = list(spec.categories or ())
    unknown = column[column.notna() & ~column.isin(categories)]
    if len(unknown):
        shown = ", ".join(repr(v) for v in unknown.unique()[:5])
        raise ValidationError(
            f"column {spec.name!r}",
            f"must be one of the categories seen in training ({', '.join(map(str, categories))});"
            f" got {shown}",
        )
    return column.astype(pd.CategoricalDtype(categories, ordered=spec.ordered))


def _prepare_tensor(signature: Signature, example: Example) -> np.ndarray:
    array = example.to_numpy() if isinstance(example, pd.DataFrame) else example
    shape = tuple(signature.shape or ())
    wanted = "(rows, " + ", ".join(str(d) for d in shape[1:]) + ")"
    if array.ndim != len(shape) or tuple(array.shape[1:]) != shape[1:]:
        raise ValidationError("input", f"must be an array of shape {wanted}, got {array.shape}")
    dtype = str(signature.dtype)
    expected, got = _kind_of(dtype), _kind(array)
    if expected != "object" and got not in _ACCEPTS[expected]:
        raise ValidationError(
            "input", f"must hold {_KIND_WORDS[expected]}, got dtype {array.dtype}"
        )
    return array.astype(dtype, copy=False)


# -- the stored example and its expected output ----------------------------


def example_to_parquet(example: Example) -> bytes:
    """The example as Parquet bytes (an array is stored as a table of its flattened rows)."""
    if isinstance(example, np.ndarray):
        rows = example.reshape(len(example), -1)
        frame = pd.DataFrame(rows, columns=[str(i) for i in range(rows.shape[1])])
    else:
        frame = example
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def example_from_parquet(data: bytes, signature: Signature) -> Example:
    """The example stored by `example_to_parquet`, an array again where the signature says so."""
    frame = pd.read_parquet(io.BytesIO(data))
    if signature.kind != "tensor":
        return frame
    rest = tuple(int(d) for d in (signature.shape or (None,))[1:] if d is not None)
    return frame.to_numpy(dtype=signature.dtype).reshape((len(frame), *rest))


def encode_output(output: Any) -> tuple[str, bytes]:
    """A prediction as a file: ``.npy`` for numbers and strings, ``.json`` for anything else."""
    array = _as_array(output)
    if array.dtype.kind in "biufU":
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return "expected_output.npy", buffer.getvalue()
    return "expected_output.json", json.dumps(array.tolist(), default=str).encode()


def decode_output(name: str, data: bytes) -> np.ndarray:
    """The prediction stored by `encode_output`."""
    if name.endswith(".npy"):
        return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))
    return np.asarray(json.loads(data), dtype=object)


def outputs_match(expected: Any, actual: Any) -> bool:
    """Whether two predictions agree: numbers within float tolerance, anything else exactly."""
    left, right = _as_array(expected), _as_array(actual)
    if left.shape != right.shape:
        return False
    if left.dtype.kind in "biuf" and right.dtype.kind in "biuf":
        return bool(np.allclose(left, right, rtol=1e-5, atol=1e-7, equal_nan=True))
    return _plain_list(left.tolist()) == _plain_list(right.tolist())


def _plain_list(values: Sequence[Any]) -> list[Any]:
    return [str(v) if not isinstance(v, list) else _plain_list(v) for v in values]


def _as_array(output: Any) -> np.ndarray:
    if isinstance(output, pd.DataFrame | pd.Series):
        output = output.to_numpy()
    return np.asarray(output)
