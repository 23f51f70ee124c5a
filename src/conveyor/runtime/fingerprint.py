"""Cheap fingerprints of in-memory data, to tell that an object passed on is still unchanged.

When a step returns the very object it received, the runner compares the
object's fingerprint now with the one taken when the object was stored: if
they match, the stored artifact is reused instead of serializing and hashing
the object again. CRC-32 over the raw buffers runs at memory speed (about
8 ms for a 1,000,000 x 4 float64 frame here, against 60 ms or more to write
and hash it as Parquet). It guards against in-place changes by the code in
between, not against an adversary: the artifact's sha256 is still what
identifies content.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterable
from typing import Any

__all__ = ["fingerprint"]


def fingerprint(value: Any) -> int | None:
    """A CRC of ``value``'s data and shape, or None if it has no cheap fingerprint.

    Supported: numpy arrays, pandas DataFrames with numpy-backed columns,
    pyarrow Tables, polars DataFrames.
    """
    for module, attr, fn in _KINDS:
        cls = getattr(sys.modules.get(module), attr, None) if module in sys.modules else None
        if isinstance(cls, type) and isinstance(value, cls):
            return fn(value)
    return None


def _crc(buffers: Iterable[Any], header: str) -> int:
    crc = zlib.crc32(header.encode())
    for buffer in buffers:
        crc = zlib.crc32(buffer, crc)
    return crc


def _array(array: Any) -> int | None:
    if array.dtype.hasobject or not array.flags.c_contiguous:
        return None
    return _crc([memoryview(array).cast("B")], f"{array.dtype.str}{array.shape}")


def _frame(df: Any) -> int | None:
    index = df.index
    parts = [f"{df.shape}{list(df.columns)!r}{list(df.dtypes.astype(str))}"]
    if type(index).__name__ == "RangeIndex":
        parts.append(repr(index))
        buffers = []
    else:
        first = _array_buffer(index.to_numpy())
        if first is None:
            return None
        buffers = [first]
    for column in range(df.shape[1]):
        buffer = _array_buffer(df.iloc[:, column].to_numpy())
        if buffer is None:
            return None
        buffers.append(buffer)
    return _crc(buffers, "".join(parts))


def _array_buffer(array: Any) -> memoryview | None:
    if array.dtype.hasobject or not array.flags.c_contiguous:
        return None
    return memoryview(array).cast("B")


def _arrow(table: Any) -> int:
    buffers = [
        buf
        for column in table.columns
        for chunk in column.chunks
        for buf in chunk.buffers()
        if buf is not None
    ]
    return _crc(buffers, f"{table.schema}{table.num_rows}")


def _polars(df: Any) -> int:
    return _arrow(df.to_arrow())


_KINDS = (
    ("numpy", "ndarray", _array),
    ("pandas", "DataFrame", _frame),
    ("pyarrow", "Table", _arrow),
    ("polars", "DataFrame", _polars),
)
