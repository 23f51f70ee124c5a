"""How step outputs become bytes in the artifact store: a small registry, type → serializer.

Built in: pandas and polars DataFrames and pyarrow Tables as Parquet, numpy
arrays as ``.npy`` (never pickled), JSON-able values (None, bool, int, float,
str, and lists and string-keyed dicts of those) as JSON, matplotlib figures
as PNG (`FIGURE_SVG` for SVG). Library types are matched by name and only
once their library is imported, so the registry imports none of them.
Anything else needs `register_serializer`, ``@step(serializers=…)`` or, for
trusted code, ``@step(allow_pickle=True)``.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.errors import NotFoundError, ValidationError

__all__ = [
    "FIGURE_SVG",
    "PICKLE",
    "Serializer",
    "get_serializer",
    "is_jsonable",
    "register_serializer",
    "serializer_for",
    "serializer_for_type",
    "unsupported_output",
]

_JSON_MAX_DEPTH = 100


@dataclass(frozen=True)
class Serializer:
    """Turns values of some type into bytes and back.

    Attributes:
        name: a unique, stable name stored with every output it wrote (``pandas.parquet``).
        suffix: the artifact file's suffix (``.parquet``).
        media_type: the artifact's media type.
        dump: value → bytes.
        load: bytes → value.
    """

    name: str
    suffix: str
    media_type: str
    dump: Callable[[Any], bytes]
    load: Callable[[bytes], Any]


@dataclass(frozen=True)
class _Entry:
    target: type | str  # a type, or "module:Attr" resolved once the module is imported
    serializer: Serializer
    accepts: Callable[[Any], bool] | None = None

    def resolve(self) -> type | None:
        if isinstance(self.target, type):
            return self.target
        module, _, attr = self.target.partition(":")
        found = getattr(sys.modules.get(module), attr, None) if module in sys.modules else None
        return found if isinstance(found, type) else None

    def label(self) -> str:
        target = self.target if isinstance(self.target, str) else _qualname(self.target)
        return f"{target.replace(':', '.')} ({self.serializer.name})"


_lock = threading.Lock()
_registered: list[_Entry] = []  # by register_serializer, newest last; searched newest first
_by_name: dict[str, Serializer] = {}


def register_serializer(target: type | str, serializer: Serializer) -> None:
    """Use ``serializer`` for outputs of type ``target`` (and its subclasses).

    Args:
        target: a type, or ``"module:Class"`` to match without importing the module
            (e.g. ``"sklearn.base:BaseEstimator"``).
        serializer: how to write and read such values; its ``name`` is stored with
            each output so that the same serializer reads it back.
    """
    if isinstance(target, str) and ":" not in target:
        raise ValidationError("target", "a string target is 'module:Class'")
    with _lock:
        _registered.append(_Entry(target, serializer))
        _by_name[serializer.name] = serializer


def get_serializer(name: str) -> Serializer:
    """The serializer that wrote outputs under ``name``.

    Raises:
        NotFoundError: no serializer of that name is registered in this process.
    """
    found = _by_name.get(name)
    if found is None:
        raise NotFoundError(
            f"no serializer named {name!r} is registered in this process "
            f"(known: {', '.join(sorted(_by_name))}); register it before running"
        )
    return found


def serializer_for(
    value: Any, overrides: Mapping[type, Serializer] | None = None, *, allow_pickle: bool = False
) -> Serializer | None:
    """The serializer for ``value``: the step's overrides, the registry, then pickle if allowed."""
    for cls, ser in (overrides or {}).items():
        if isinstance(value, cls):
            return ser
    for entry in _entries():
        if _matches(entry, value):
            return entry.serializer
    return PICKLE if allow_pickle else None


def serializer_for_type(
    cls: type, overrides: Mapping[type, Serializer] | None = None, *, allow_pickle: bool = False
) -> Serializer | None:
    """The serializer values annotated ``cls`` would get (checked before a pipeline runs)."""
    for target, ser in (overrides or {}).items():
        if _subclass(cls, target):
            return ser
    for entry in _entries():
        target_cls = entry.resolve()
        if target_cls is not None and _subclass(cls, target_cls):
            return entry.serializer
    return PICKLE if allow_pickle else None


def unsupported_output(step: str, output: str, cls: type) -> ValidationError:
    """The error for an output no serializer handles, listing what is supported."""
    supported = ", ".join(e.label() for e in reversed(_entries()))
    return ValidationError(
        f"step {step!r} output {output!r}",
        f"no serializer for {_qualname(cls)}; supported: {supported}. Register one with "
        "conveyor.register_serializer(type, Serializer(...)), pass "
        "@step(serializers={type: ...}), or opt in with @step(allow_pickle=True)",
    )


def _matches(entry: _Entry, value: Any) -> bool:
    target = entry.resolve()
    if target is None or not isinstance(value, target):
        return False
    return entry.accepts is None or entry.accepts(value)


def _entries() -> list[_Entry]:
    with _lock:
        return [*reversed(_registered), *_BUILTIN]


def _subclass(cls: type, target: type) -> bool:
    try:
        return issubclass(cls, target)
    except TypeError:
        return False


def _qualname(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# --- JSON ------------------------------------------------------------------------


def is_jsonable(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` round-trips through JSON unchanged (no tuples, string keys only)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if depth >= _JSON_MAX_DEPTH:
        return False
    if type(value) is list:
        return all(is_jsonable(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and is_jsonable(v, depth + 1) for k, v in value.items())
    return False


def _json_dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _json_load(data: bytes) -> Any:
    return json.loads(data)


JSON = Serializer("json", ".json", "application/json", _json_dump, _json_load)


# --- Parquet (pandas, polars, pyarrow) -------------------------------------------


def _write_table(table: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Dictionary encoding pays off for repeated values, not for floats (it doubles
    # the write time of a float column and then falls back anyway).
    dictionary = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy", use_dictionary=dictionary)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def _read_table(data: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data))


def _pandas_dump(df: Any) -> bytes:
    import pyarrow as pa

    return _write_table(pa.Table.from_pandas(df))


def _polars_dump(df: Any) -> bytes:
    buffer = io.BytesIO()
    df.write_parquet(buffer, compression="snappy")
    return buffer.getvalue()


def _polars_load(data: bytes) -> Any:
    import polars as pl

    return pl.read_parquet(io.BytesIO(data))


PANDAS = Serializer(
    "pandas.parquet",
    ".parquet",
    "application/vnd.apache.parquet",
    _pandas_dump,
    lambda data: _read_table(data).to_pandas(),
)
ARROW = Serializer(
    "arrow.parquet", ".parquet", "application/vnd.apache.parquet", _write_table, _read_table
)
POLARS = Serializer(
    "polars.parquet", ".parquet", "application/vnd.apache.parquet", _polars_dump, _polars_load
)


# --- numpy -----------------------------------------------------------------------


def _npy_dump(value: Any) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(value), allow_pickle=False)
    return buffer.getvalue()


def _npy_load(data: bytes) -> Any:
    import numpy as np

    array = np.load(io.BytesIO(data), allow_pickle=False)
    return array[()] if array.ndim == 0 else array  # a numpy scalar comes back as one


NUMPY = Serializer("numpy.npy", ".npy", "application/x-npy", _npy_dump, _npy_load)


# --- matplotlib ------------------------------------------------------------------


def _figure(fmt: str) -> Callable[[Any], bytes]:
    def dump(figure: Any) -> bytes:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt, bbox_inches="tight")
        return buffer.getvalue()

    return dump


# A figure cannot be rebuilt from its image: reading one back gives the file's bytes.
FIGURE_PNG = Serializer("matplotlib.png", ".png", "image/png", _figure("png"), bytes)
FIGURE_SVG = Serializer("matplotlib.svg", ".svg", "image/svg+xml", _figure("svg"), bytes)


# --- pickle (opt-in per step) ----------------------------------------------------


def _pickle_dump(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_load(data: bytes) -> Any:
    # Only ever given bytes this process's runner stored and the artifact store
    # verified against their sha256, for a step that opted in.
    return pickle.loads(data)  # noqa: S301


PICKLE = Serializer("pickle", ".pkl", "application/x-python-pickle", _pickle_dump, _pickle_load)


def _lifecycle_entries() -> tuple[_Entry, ...]:
    # The lifecycle (a lower layer) describes how its results are stored; the runtime
    # registers them. The module is light: each dump/load imports what it needs.
    from conveyor.lifecycle.serialization import SERIALIZERS

    return tuple(
        _Entry(s.target, Serializer(s.name, s.suffix, s.media_type, s.dump, s.load), s.accepts)
        for s in SERIALIZERS
    )


_BUILTIN: tuple[_Entry, ...] = (
    *_lifecycle_entries(),
    _Entry("pandas:DataFrame", PANDAS),
    _Entry("polars:DataFrame", POLARS),
    _Entry("pyarrow:Table", ARROW),
    _Entry("numpy:ndarray", NUMPY),
    _Entry("numpy:generic", NUMPY),
    _Entry("matplotlib.figure:Figure", FIGURE_PNG),
    *(_Entry(t, JSON, is_jsonable) for t in (type(None), bool, int, float, str, list, dict)),
)
_by_name.update(
    {e.serializer.name: e.serializer for e in _BUILTIN} | {s.name: s for s in (FIGURE_SVG, PICKLE)}
)
