"""Request bodies of each protocol turned into one batch of rows, and answers turned into JSON.

Numeric rows for a numeric signature become one array at once (`fastpath.Rows`);
anything else becomes a DataFrame that `ServedModel.validate` checks column by column.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from itertools import chain
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import orjson
import pandas as pd

from conveyor.serving.errors import HTTPProblem
from conveyor.serving.fastpath import Rows, rows_array, stack_columns, tensor_rows

if TYPE_CHECKING:
    from conveyor.core.registry import Signature

__all__ = [
    "Batch",
    "frame_from_mlflow",
    "frame_from_v1",
    "frame_from_v2",
    "jsonable",
    "parse_csv",
    "parse_json",
    "v2_datatype",
]

# What a request body becomes: rows to check and predict.
Batch: TypeAlias = pd.DataFrame | Rows

_V2_DTYPES = {
    "FP64": np.float64,
    "FP32": np.float32,
    "FP16": np.float16,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT64": np.uint64,
    "UINT32": np.uint32,
    "UINT16": np.uint16,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


def parse_json(body: bytes, signature: Signature) -> Any:
    """``body`` as JSON; NaN and Infinity only where the signature allows nulls.

    Raises:
        HTTPProblem: 400 when it is not JSON (or too deeply nested, or holds NaN).
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        nullable = any(c.nullable for c in signature.columns)
        if nullable:
            try:
                return json.loads(body, parse_constant=lambda _: math.nan)
            except (ValueError, RecursionError):
                pass
        raise HTTPProblem(400, f"the body is not valid JSON: {exc}", "body", "valid JSON") from exc


def parse_csv(body: bytes) -> pd.DataFrame:
    """``body`` as CSV with a header row.

    Raises:
        HTTPProblem: 400 when it does not parse.
    """
    try:
        return pd.read_csv(io.BytesIO(body))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise HTTPProblem(400, f"the body is not valid CSV: {exc}", "body", "CSV") from exc


def _names(signature: Signature) -> list[str]:
    return [c.name for c in signature.columns]


def _records(rows: Any, signature: Signature, field: str) -> Batch:
    """Records (a list of objects) or rows (a list of lists) as a batch."""
    if not isinstance(rows, list) or not rows:
        raise HTTPProblem(400, f"{field} must be a non-empty list", field, "non-empty list")
    lean = rows_array(rows, signature)
    if lean is not None:
        return lean
    if all(isinstance(r, dict) for r in rows):
        return pd.DataFrame.from_records(rows)
    if all(isinstance(r, list) for r in rows):
        if signature.kind == "tensor":
            # A model registered from an array: the signature checks the rows' shape and dtype.
            return pd.DataFrame.from_records(rows)
        names = _names(signature)
        if any(len(r) != len(names) for r in rows):
            raise HTTPProblem(
                400,
                f"each row of {field} must hold {len(names)} values ({', '.join(names)})",
                field,
                "row length",
            )
        return pd.DataFrame.from_records(rows, columns=names)
    if signature.kind == "tensor" or len(signature.columns) == 1:
        return pd.DataFrame({_names(signature)[0] if signature.columns else 0: rows})
    raise HTTPProblem(400, f"{field} must be a list of objects or of lists", field, "shape")


def frame_from_v1(data: Any, signature: Signature) -> Batch:
    """A KServe V1 body (``{"instances": [...]}``) as a batch."""
    if not isinstance(data, dict) or "instances" not in data:
        raise HTTPProblem(400, 'the body must be {"instances": [...]}', "instances", "required")
    return _records(data["instances"], signature, "instances")


def frame_from_mlflow(data: Any, signature: Signature) -> Batch:
    """An MLflow scoring body (dataframe_split, dataframe_records, instances, inputs)."""
    if not isinstance(data, dict):
        raise HTTPProblem(400, "the body must be a JSON object", "body", "object")
    keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in data]
    if len(keys) != 1:
        raise HTTPProblem(
            400,
            "the body must hold exactly one of dataframe_split, dataframe_records, "
            "instances, inputs",
            "body",
            "one input key",
        )
    key = keys[0]
    value = data[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise HTTPProblem(400, "dataframe_split needs columns and data", key, "split format")
        columns = value.get("columns")
        if isinstance(columns, list):
            lean = rows_array(value["data"], signature, columns)
            if lean is not None:
                return lean
            for i, row in enumerate(value["data"]):
                if not isinstance(row, list) or len(row) != len(columns):
                    raise HTTPProblem(
                        400,
                        f"dataframe_split: row {i} must be a list of {len(columns)} values "
                        "(one per column)",
                        key,
                        "split format",
                    )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # pandas pads ragged rows with a warning
                return pd.DataFrame(value["data"], columns=columns)
        except (ValueError, TypeError, AssertionError, Warning) as exc:
            raise HTTPProblem(400, f"dataframe_split: {exc}", key, "split format") from exc
    if key == "inputs" and isinstance(value, dict):
        try:
            return pd.DataFrame({str(k): _column(v, str(k)) for k, v in value.items()})
        except ValueError as exc:
            raise HTTPProblem(400, f"inputs: {exc}", key, "equal-length columns") from exc
    return _records(value, signature, key)


def _column(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise HTTPProblem(400, f"input {name!r} must be a list", name, "list")
    return value


def frame_from_v2(data: Any, signature: Signature) -> Batch:
    """An Open Inference V2 body: one tensor per column, or one 2-D tensor."""
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), list) or not data["inputs"]:
        raise HTTPProblem(
            400, "the body must hold a non-empty list of inputs", "inputs", "required"
        )
    tensors = data["inputs"]
    if len(tensors) == 1:
        name, array = _tensor(tensors[0])
        if array.ndim == 2 and (array.shape[1] > 1 or name not in _names(signature)):
            names = _names(signature)
            if array.shape[1] != len(names):
                raise HTTPProblem(
                    400,
                    f"a 2-D input must have {len(names)} columns ({', '.join(names)}), "
                    f"got shape {list(array.shape)}",
                    name,
                    "shape",
                )
            lean = tensor_rows(array, signature)
            return lean if lean is not None else pd.DataFrame(array, columns=names)
    columns: dict[str, np.ndarray] = {}
    for tensor in tensors:
        name, array = _tensor(tensor)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise HTTPProblem(400, f"input {name!r} must have shape [n] or [n, 1]", name, "shape")
        columns[name] = array
    lengths = {len(a) for a in columns.values()}
    if len(lengths) > 1:
        raise HTTPProblem(400, "all inputs must have the same number of rows", "inputs", "shape")
    lean = stack_columns(columns, signature)
    return lean if lean is not None else pd.DataFrame(columns)


def _tensor(tensor: Any) -> tuple[str, np.ndarray]:
    if not isinstance(tensor, dict):
        raise HTTPProblem(400, "each input must be an object", "inputs", "object")
    name = tensor.get("name")
    shape = tensor.get("shape")
    datatype = tensor.get("datatype")
    data = tensor.get("data")
    if not isinstance(name, str):
        raise HTTPProblem(400, "each input needs a string name", "inputs", "name")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise HTTPProblem(400, f"input {name!r} needs a shape", name, "shape")
    if len(shape) not in (1, 2):
        raise HTTPProblem(400, f"input {name!r} must be 1-D or 2-D", name, "shape")
    if not isinstance(data, list):
        raise HTTPProblem(400, f"input {name!r} needs data (a list)", name, "data")
    flat, kinds = _flatten(data)
    if len(flat) != math.prod(shape):
        raise HTTPProblem(
            400, f"input {name!r} holds {len(flat)} values, its shape says {shape}", name, "shape"
        )
    if datatype == "BYTES":
        if not kinds <= {str}:
            raise HTTPProblem(422, f"input {name!r} must hold strings", name, "datatype BYTES")
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return name, array.reshape(shape)
    dtype = _V2_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise HTTPProblem(422, f"input {name!r}: unknown datatype {datatype!r}", name, "datatype")
    # Checked by the set of value types (one C-level pass), not value by value.
    if dtype is np.bool_:
        ok = kinds <= {bool}
    elif not kinds <= {int, float}:
        ok = False
    elif np.issubdtype(dtype, np.integer) and float in kinds:
        ok = all(float(v).is_integer() for v in flat)
    else:
        ok = True
    if not ok:
        raise HTTPProblem(422, f"input {name!r} must hold {datatype} values", name, datatype)
    try:
        array = np.asarray(flat, dtype=dtype)
    except (ValueError, OverflowError) as exc:
        raise HTTPProblem(422, f"input {name!r}: {exc}", name, datatype) from exc
    return name, array.reshape(shape)


def _flatten(data: list[Any]) -> tuple[list[Any], set[type]]:
    """The values of 1-D or row-nested tensor data, and the set of their types."""
    outer = set(map(type, data))
    if outer == {list}:
        flat = list(chain.from_iterable(data))
        kinds = set(map(type, flat))
        if kinds & {list, dict}:
            raise HTTPProblem(400, "tensor data nests too deep", "inputs", "shape")
        return flat, kinds
    if outer & {list, dict}:
        raise HTTPProblem(400, "tensor data mixes rows and values", "inputs", "shape")
    return data, outer


def jsonable(values: np.ndarray) -> list[Any]:
    """A prediction array as plain JSON values."""
    return list(values.tolist())


def v2_datatype(values: np.ndarray) -> str:
    """The V2 datatype of an output array."""
    kind = values.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    return "BYTES"
