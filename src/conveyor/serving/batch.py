"""Batch inference: a Parquet file of rows in, a Parquet file of keys and predictions out.

The input is streamed in chunks (``ParquetFile.iter_batches``), each checked against
the version's signature as the server checks a request; nulls reach the model as
missing values, as on the server, and a model that takes none refuses them (the
error names the first null cell). The first bad row stops the run with an error
naming the column, the rule and the row (0-based, in the input file); nothing is
written then, since the output goes to a temporary file renamed into place only
when every chunk succeeded. (Failing whole is the choice: a partial output next to
an errors file is easy to mistake for a full one.)

The output holds the key columns (by default every input column the model does not
take, e.g. ids), ``prediction`` and, for a classifier, ``probability`` (of the
positive class for two classes, of the predicted class otherwise).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from conveyor.core.registry import ColumnSpec, Signature
    from conveyor.registry.loaded import LoadedModel

__all__ = ["BatchResult", "check_chunk", "predict_file"]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch prediction did."""

    rows: int
    chunks: int
    output: Path
    key_columns: tuple[str, ...]
    seconds: float


def input_rows(input_path: Path) -> int:
    """The number of rows of a Parquet file (`ValidationError` naming ``--input`` if unreadable)."""
    return int(_open(input_path).metadata.num_rows)


def _open(input_path: Path) -> Any:
    import pyarrow.parquet as pq

    if not Path(input_path).is_file():
        raise ValidationError("--input", f"{input_path} does not exist or is not a file")
    try:
        return pq.ParquetFile(input_path)
    except Exception as exc:
        raise ValidationError("--input", f"{input_path} is not a Parquet file: {exc}") from exc


def predict_file(
    model: LoadedModel,
    input_path: Path,
    output_path: Path,
    *,
    chunk_rows: int = 65_536,
    key_columns: Sequence[str] | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> BatchResult:
    """Predict every row of ``input_path`` with ``model``, writing ``output_path``.

    Args:
        model: the loaded version.
        input_path: a Parquet file with (at least) the model's input columns.
        output_path: where the Parquet output goes (written whole, or not at all).
        chunk_rows: rows read, checked and predicted at a time.
        key_columns: input columns copied to the output (default: those the model
            does not take).
        on_chunk: called with each chunk's row count (for a progress bar).

    Raises:
        ValidationError: an unreadable input, an unknown key column, a bad
            ``chunk_rows``, or a row that breaks the signature (naming the column,
            the rule and the row).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if chunk_rows < 1:
        raise ValidationError("--chunk-rows", f"must be at least 1, got {chunk_rows}")
    started = time.perf_counter()
    parquet = _open(input_path)
    names = parquet.schema_arrow.names
    signature = model.signature
    features = {c.name for c in signature.columns}
    keys = (
        tuple(key_columns)
        if key_columns is not None
        else tuple(n for n in names if n not in features)
    )
    for key in keys:
        if key not in names:
            raise ValidationError(
                "--key-column", f"the input has no column {key!r}; columns: {', '.join(names)}"
            )
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = output_path.with_name(f".{output_path.name}.{os.getpid()}.partial")
    writer: pq.ParquetWriter | None = None
    rows = chunks = 0
    try:
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            table = _predict_chunk(model, batch, keys, rows)
            if writer is None:
                writer = pq.ParquetWriter(temporary, table.schema, compression="zstd")
            writer.write_table(table.cast(writer.schema))
            rows += batch.num_rows
            chunks += 1
            if on_chunk is not None:
                on_chunk(batch.num_rows)
        if writer is None:  # an empty input: an empty output with the key columns
            empty = pa.table({k: pa.array([], parquet.schema_arrow.field(k).type) for k in keys})
            pq.write_table(empty.append_column("prediction", pa.array([], pa.float64())), temporary)
        else:
            writer.close()
            writer = None
        temporary.replace(output_path)
    finally:
        if writer is not None:
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return BatchResult(rows, chunks, output_path, keys, time.perf_counter() - started)


def _predict_chunk(
    model: LoadedModel, batch: pa.RecordBatch, keys: tuple[str, ...], start: int
) -> pa.Table:
    import pyarrow as pa

    frame = batch.to_pandas()
    prepared = check_chunk(model.signature, frame, start)
    raw = model.model
    try:
        prediction = np.asarray(raw.predict(prepared))
    except (ValueError, TypeError) as exc:
        raise _refused(prepared, start, exc) from None
    columns: dict[str, Any] = {k: batch.column(k) for k in keys}
    columns["prediction"] = pa.array(_flat(prediction), from_pandas=True)
    if model.has_predict_proba:
        proba = np.asarray(raw.predict_proba(prepared))
        if proba.ndim == 2 and proba.shape[1] == 2:
            columns["probability"] = pa.array(proba[:, 1].astype(np.float64))
        elif proba.ndim == 2:
            columns["probability"] = pa.array(proba.max(axis=1).astype(np.float64))
    return pa.table(columns)


def _refused(frame: Any, start: int, exc: Exception) -> ValidationError:
    """The model's refusal of a chunk, naming the first null cell when there is one."""
    said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    nulls = frame.isna() if hasattr(frame, "isna") else None
    if nulls is not None and bool(nulls.to_numpy().any()):
        column = str(nulls.any().idxmax())
        row = start + int(np.argmax(nulls[column].to_numpy()))
        return ValidationError(
            f"column {column!r}",
            f"must not be null for this model (it takes no missing values); row {row} is "
            f"null ({said})",
        )
    rows = f"rows {start}-{start + len(frame) - 1}"
    return ValidationError("input", f"the model refused {rows}: {said}")


def _flat(values: np.ndarray) -> np.ndarray:
    return values if values.ndim == 1 else values.reshape(len(values), -1)[:, 0]


def check_chunk(signature: Signature, frame: pd.DataFrame, start: int = 0) -> Any:
    """``frame`` checked and prepared as the server checks a request, with the bad row named.

    Args:
        signature: the version's signature.
        frame: one chunk of input rows.
        start: the chunk's first row in the whole input (for the message).

    Raises:
        ValidationError: naming the column (``field``), the rule and the row.
    """
    from conveyor.registry.signature import prepare_input

    try:
        return prepare_input(signature, frame)
    except ValidationError as exc:
        bad = _first_bad_row(signature, frame, exc.field)
        where = "" if bad is None else f"; first at row {start + bad}"
        raise ValidationError(exc.field, f"{exc.rule}{where}") from exc


def _first_bad_row(signature: Signature, frame: pd.DataFrame, field: str) -> int | None:
    spec = next((c for c in signature.columns if field == f"column {c.name!r}"), None)
    if spec is None or spec.name not in frame.columns:
        return None
    bad = _bad_values(spec, frame[spec.name])
    return int(np.argmax(bad)) if bad is not None and bad.any() else None


def _bad_values(spec: ColumnSpec, column: pd.Series) -> np.ndarray | None:
    import pandas as pd

    present = column.notna().to_numpy()
    if spec.categories is not None and spec.dtype == "category":
        known = column.isin(list(spec.categories)).to_numpy()
        return np.asarray(present & ~known)
    if spec.dtype.startswith(("int", "uint", "float")):
        numbers = pd.to_numeric(column, errors="coerce").notna().to_numpy()
        return np.asarray(present & ~numbers)
    if spec.dtype == "bool":
        flags = column.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
        return np.asarray(present & ~flags)
    return None
