"""`CaptureWriter`: what the server answered, written to the capture log off the request path.

A request only appends one entry to an in-memory buffer (under a lock held for a few
instructions); a background thread turns the buffer into Arrow tables and writes them
with `conveyor.stores.capture.write_capture`, one file per model and version each
time it flushes: when the time window ends, when the buffer holds ``flush_rows``
rows, and on `close`. Memory is bounded: once ``max_rows`` rows wait, new entries are
dropped and counted (``conveyor_capture_dropped_rows_total``), never waited for.

Outputs are written as ``out.prediction`` and, for a classifier, ``out.probability``:
the probability of the positive class when there are two classes, else of the
predicted class.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import attrgetter, is_, is_not, itemgetter
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias

import numpy as np

from conveyor.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from conveyor.serving.model import Batch
    from conveyor.stores.artifacts.base import ByteStore

__all__ = ["CaptureEntry", "CaptureWriter"]

log = logging.getLogger(__name__)


class CaptureEntry(NamedTuple):
    """One answered request (or its shadow copy): the fields of `CaptureWriter.record`.

    ``inputs`` holds the validated rows: a DataFrame, or an array whose columns are
    named by ``columns``. It is None for a request refused before it had validated rows;
    that request is written as one row without inputs or outputs.

    ``batch`` is the `conveyor.serving.model.Batch` the request was predicted in, if
    any, and ``start`` its first row there: the writer then takes the rows and
    outputs of the whole batch at once (``inputs``, ``prediction`` and ``proba``
    still give ``rows`` and serve a sampled capture).

    The server's request path calls `CaptureWriter.record` with these fields and
    builds no entry; `CaptureWriter.add` takes one.
    """

    model: str
    version: int
    route: str
    request_id: str
    timestamp_ms: int
    latency_ms: float
    status: int
    inputs: Any = None
    columns: tuple[str, ...] = ()
    prediction: np.ndarray | None = None
    proba: np.ndarray | None = None
    batch: Batch | None = None
    start: int = 0

    @property
    def rows(self) -> int:
        """The rows this entry writes."""
        return 1 if self.inputs is None else max(len(self.inputs), 1)


_FLUSH_ENTRIES = 10_000

# A buffered request: CaptureEntry's fields, then the rows it writes (1 when refused).
_Buffered: TypeAlias = tuple[Any, ...]
_FIELDS = len(CaptureEntry._fields) + 1
_INPUTS, _BATCH, _ROWS = CaptureEntry._fields.index("inputs"), _FIELDS - 3, _FIELDS - 1


class _Pending:
    """Buffered requests as one list per field, made by the writer.

    ``entries`` are what the request path appended (`CaptureWriter.record`): one
    plain tuple per request. A tuple of numbers, strings, arrays and None is
    untracked by the cyclic collector at its first young collection, so no object
    per request stays for the collector to walk (a tuple subclass, such as
    `CaptureEntry`, would stay tracked).
    """

    __slots__ = (
        "answered",
        "batches",
        "columns",
        "entries",
        "inputs",
        "latencies",
        "models",
        "predictions",
        "probas",
        "request_ids",
        "routes",
        "sizes",
        "starts",
        "statuses",
        "timestamps",
        "versions",
    )

    def __init__(self, entries: list[_Buffered], refused: int | None = None) -> None:
        self.entries = entries
        # One pass per field; not ``zip(*entries)``, which makes an iterator per entry:
        # a flush's worth of them triggered full collections of the whole heap.
        fields = [list(map(itemgetter(k), entries)) for k in range(_FIELDS)]
        (
            self.models,
            self.versions,
            self.routes,
            self.request_ids,
            self.timestamps,
            self.latencies,
            self.statuses,
            self.inputs,
            self.columns,
            self.predictions,
            self.probas,
            self.batches,
            self.starts,
            self.sizes,
        ) = fields
        if refused is None:
            refused = len(entries) - sum(map(_answered, entries))
        self.answered = len(entries) - refused  # requests with rows

    def __len__(self) -> int:
        return len(self.entries)

    def select(self, indices: list[int]) -> _Pending:
        """The requests at ``indices``, in that order."""
        return _Pending([self.entries[i] for i in indices])

    def groups(self) -> dict[tuple[str, int], _Pending]:
        """The requests by model and version (one file each)."""
        if not self.entries:
            return {}
        if self.models.count(self.models[0]) == len(self.models) and self.versions.count(
            self.versions[0]
        ) == len(self.versions):
            return {(self.models[0], self.versions[0]): self}
        where: dict[tuple[str, int], list[int]] = {}
        for i, key in enumerate(zip(self.models, self.versions, strict=True)):
            where.setdefault(key, []).append(i)
        return {key: self.select(indices) for key, indices in where.items()}


class CaptureWriter:
    """Buffers captured requests and writes them as Parquet files in a background thread.

    Args:
        store: the artifact store's byte store (``open_artifact_store(uri).byte_store``).
        sample: the share of requests captured, from 0 to 1.
        window_s: the longest a row waits in memory before its file is written.
        flush_rows: write as soon as this many rows wait.
        max_rows: the most rows held in memory; beyond it rows are dropped and counted.
        seed: seeds the sampling (for tests).

    Raises:
        ValidationError: an option is out of range (naming it).
    """

    def __init__(
        self,
        store: ByteStore,
        *,
        sample: float = 1.0,
        window_s: float = 60.0,
        flush_rows: int = 50_000,
        max_rows: int = 250_000,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValidationError("capture_sample", f"must be between 0 and 1, got {sample}")
        if not window_s > 0:
            raise ValidationError("capture_window", f"must be more than 0 seconds, got {window_s}")
        if flush_rows < 1:
            raise ValidationError("capture_flush_rows", f"must be at least 1, got {flush_rows}")
        if max_rows < flush_rows:
            raise ValidationError(
                "capture_max_rows", f"must be at least flush_rows ({flush_rows}), got {max_rows}"
            )
        self.store = store
        self.sample = sample
        self.window_s = window_s
        self.flush_rows = flush_rows
        self.max_rows = max_rows
        self._random = random.Random(seed).random  # noqa: S311 - sampling, not secrets
        self._lock = threading.Lock()
        self._entries: list[_Buffered] = []
        self._refused = 0  # buffered requests without rows
        self._rows = 0
        self._flushing = threading.Lock()  # one flush at a time: they share the scratch
        self._scratch = _Scratch()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.captured_rows = 0
        self.dropped_rows = 0
        self.written_rows = 0
        self.written_files = 0
        self.failed_writes = 0

    # -- the request path ----------------------------------------------------
    def sampled(self) -> bool:
        """Whether to capture the request at hand (one draw per request)."""
        return self.sample >= 1.0 or (self.sample > 0.0 and self._random() < self.sample)

    def add(self, entry: CaptureEntry) -> bool:
        """Queue ``entry`` for writing; False (and counted) when the buffer is full."""
        return self.record(*entry)

    def record(
        self,
        model: str,
        version: int,
        route: str,
        request_id: str,
        timestamp_ms: int,
        latency_ms: float,
        status: int,
        inputs: Any = None,
        columns: tuple[str, ...] = (),
        prediction: np.ndarray | None = None,
        proba: np.ndarray | None = None,
        batch: Batch | None = None,
        start: int = 0,
    ) -> bool:
        """Queue one request for writing; False (and counted) when the buffer is full.

        The fields are `CaptureEntry`'s. This is the request path's whole share of
        capture: one tuple appended to a list under a lock. A request predicted in
        a batch keeps a reference to the batch instead of its own arrays, which are
        then freed with the request, where they were made (ADR 17). A sampled capture
        keeps the request's own: a batch would hold the rows of requests not sampled.
        """
        size = 0 if inputs is None else len(inputs)
        rows = size or 1
        if batch is not None:
            if size and self.sample >= 1.0:
                inputs = prediction = proba = None
            else:
                batch = None
        with self._lock:
            if self._rows + rows > self.max_rows or self._closing:
                self.dropped_rows += rows
                return False
            entries = self._entries
            entries.append(
                (
                    model,
                    version,
                    route,
                    request_id,
                    timestamp_ms,
                    latency_ms,
                    status,
                    inputs,
                    columns,
                    prediction,
                    proba,
                    batch,
                    start,
                    rows,
                )
            )
            if not size:
                self._refused += 1
            self._rows += rows
            self.captured_rows += rows
            full = self._full()
        if full:
            self._wake.set()
        return True

    def _full(self) -> bool:
        """Whether the buffer is due to be written before its window ends.

        Many one-row requests are written sooner than ``flush_rows``: the buffer
        grows with each request.
        """
        return self._rows >= self.flush_rows or len(self._entries) >= _FLUSH_ENTRIES

    @property
    def buffered_rows(self) -> int:
        """Rows waiting to be written."""
        return self._rows

    # -- the background thread -------------------------------------------------
    def start(self) -> None:
        """Start the writing thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._closing = False
            self._thread = threading.Thread(target=self._run, name="conveyor-capture", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking rows, write what is buffered, and stop the thread."""
        with self._lock:
            self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.flush()  # whatever the thread did not get to (or when it never started)

    def _run(self) -> None:
        _name_os_thread("conveyor-capture")
        next_flush = time.monotonic() + self.window_s
        while True:
            self._wake.wait(max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            closing = self._closing
            # The same test as `add`'s: a writer woken for a buffer it then left alone
            # would be woken again by every request, each wake a switch of the GIL.
            if closing or self._full() or time.monotonic() >= next_flush:
                self.flush()
                next_flush = time.monotonic() + self.window_s
            if closing:
                return

    def flush(self) -> list[str]:
        """Write every buffered row now; returns the keys written. Never raises."""
        with self._flushing:
            with self._lock:
                entries, self._entries = self._entries, []
                refused, self._refused = self._refused, 0
                self._rows = 0
            return self._write(_Pending(entries, refused))

    def _write(self, pending: _Pending) -> list[str]:
        from conveyor.stores.capture import write_capture

        keys: list[str] = []
        for (model, _), group in pending.groups().items():
            try:
                table = _table(group, self._scratch)
                key = write_capture(self.store, model, table)
            except Exception:
                log.exception("capture: writing %d rows of %s failed", sum(group.sizes), model)
                self.failed_writes += 1
                self.dropped_rows += sum(group.sizes)
                continue
            if key is not None:
                keys.append(key)
                self.written_files += 1
                self.written_rows += table.num_rows
        return keys

    def render_metrics(self) -> list[str]:
        """Prometheus lines for the capture counters."""
        counters = (
            ("conveyor_capture_rows_total", "Rows captured (queued for writing).", "captured_rows"),
            ("conveyor_capture_dropped_rows_total", "Rows dropped: buffer full.", "dropped_rows"),
            ("conveyor_capture_written_rows_total", "Rows written to the log.", "written_rows"),
            ("conveyor_capture_files_total", "Capture files written.", "written_files"),
            (
                "conveyor_capture_failed_writes_total",
                "Capture writes that failed.",
                "failed_writes",
            ),
        )
        lines: list[str] = []
        for name, text, attr in counters:
            lines += [
                f"# HELP {name} {text}",
                f"# TYPE {name} counter",
                f"{name} {getattr(self, attr)}",
            ]
        gauge = "conveyor_capture_buffered_rows"
        lines += [f"# HELP {gauge} Rows waiting to be written.", f"# TYPE {gauge} gauge"]
        lines.append(f"{gauge} {self._rows}")
        return lines


def _name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the kernel too (Linux; `top -H`, ``/proc``).

    Python 3.11 names threads only for itself; a name the kernel knows lets an
    operator (and ``bench/bench_capture.py``) tell the writer's CPU time from the
    event loop's. At most 15 bytes are kept. Elsewhere, nothing happens.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        return


class _Scratch:
    """Two buffers reused by every flush for the stacked inputs (by columns, by rows).

    Memory the process has not touched yet is slow to fault in (a third of a flush's
    CPU was the kernel's); each buffer grows to the largest flush and stays, at most
    ``max_rows`` x the input width x 8 bytes.
    """

    def __init__(self) -> None:
        self._buffers = {"F": np.empty(0, np.uint8), "C": np.empty(0, np.uint8)}

    def block(
        self, rows: int, width: int, dtype: np.dtype[Any], order: Literal["F", "C"] = "F"
    ) -> np.ndarray:
        """An uninitialised ``rows`` x ``width`` array (Fortran- or C-ordered) over a buffer."""
        need = rows * width * dtype.itemsize
        if self._buffers[order].size < need:
            self._buffers[order] = np.empty(need, np.uint8)
        return np.ndarray((rows, width), dtype, buffer=self._buffers[order], order=order)


def _table(pending: _Pending, scratch: _Scratch | None = None) -> pa.Table:
    """The capture-log table of ``pending`` (the columns of `conveyor.stores.capture`)."""
    import pyarrow as pa

    if pending.answered == len(pending):
        return _answered_table(pending, scratch)
    answered = [i for i, entry in enumerate(pending.entries) if _answered(entry)]
    tables = []
    if answered:
        tables.append(_answered_table(pending.select(answered), scratch))
    chosen = set(answered)
    refused = pending.select([i for i in range(len(pending)) if i not in chosen])
    tables.append(_meta_table(refused))
    if len(tables) == 1:
        return tables[0]
    # The refused rows have no inputs or outputs: those columns now hold nulls.
    table = pa.concat_tables(tables, promote_options="permissive")
    return _required_table(dict(zip(table.column_names, table.columns, strict=True)))


def _has_rows(inputs: Any) -> bool:
    return inputs is not None and bool(len(inputs))


def _answered(entry: _Buffered) -> bool:
    """Whether a buffered request has rows: its own, or its batch's."""
    return entry[_BATCH] is not None or _has_rows(entry[_INPUTS])


def _meta_table(pending: _Pending) -> pa.Table:
    """The columns every row has, as a table (the rows of refused requests)."""
    return _required_table(_meta_columns(pending))


def _meta_columns(pending: _Pending) -> dict[str, pa.Array]:
    """The columns every row has, each built once per flush (no per-request arrays)."""
    import pyarrow as pa

    sizes = np.asarray(pending.sizes, dtype=np.int64)
    owner = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)  # each row's request
    starts = np.cumsum(sizes) - sizes
    rows = (np.arange(len(owner), dtype=np.int64) - np.repeat(starts, sizes)).astype(np.int32)
    owners = _numeric(owner)

    def each(values: Sequence[Any], dtype: Any) -> pa.Array:
        # `np.repeat`, not indexing by ``owner``: 8 times faster for 100-row requests.
        return _numeric(np.repeat(np.asarray(values, dtype=dtype), sizes))

    def text(values: Sequence[str]) -> pa.Array:
        # Dictionary-encoded: no string is repeated per row, and Parquet writes the
        # dictionary as it is (readers get plain strings back, `read_capture`).
        if values.count(values[0]) == len(values):  # one model, one route: one entry
            return pa.DictionaryArray.from_arrays(
                _numeric(np.zeros(len(owner), np.int32)), _strings(values[:1])
            )
        return pa.DictionaryArray.from_arrays(owners, _strings(values))

    return {
        "request_id": text(pending.request_ids),
        "row": _numeric(rows),
        "timestamp": each(pending.timestamps, np.int64),
        "model": text(pending.models),
        "version": each(pending.versions, np.int64),
        "route": text(pending.routes),
        "latency_ms": each(pending.latencies, np.float64),
        "status": each(pending.statuses, np.int16),
    }


def _answered_table(pending: _Pending, scratch: _Scratch | None) -> pa.Table:
    import pandas as pd

    columns = _meta_columns(pending)
    batched = _from_batches(pending, scratch)
    if batched is not None:  # every request's rows and outputs are its batch's
        stacked, prediction, probability = batched
        _input_columns(columns, stacked)
        columns["out.prediction"] = _numeric(prediction, with_nan=True)
        if probability is not None:
            columns["out.probability"] = _numeric(probability, with_nan=True)
        return _required_table(columns)
    pending = _unbatched(pending)
    block = _uniform_block(pending.inputs, pending.columns, scratch)
    if block is not None:  # one array for every request: no frame per request
        _input_columns(columns, block)
    else:
        frames = [_frame(i, c) for i, c in zip(pending.inputs, pending.columns, strict=True)]
        inputs = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        for name in inputs.columns:
            column = inputs[name]
            if isinstance(column.dtype, pd.CategoricalDtype):
                column = column.astype(column.cat.categories.dtype)
            columns[f"in.{name}"] = _numeric(np.asarray(column), with_nan=True)
    predictions = pending.predictions
    if _none_missing(predictions):
        values = _outputs(predictions, _flat)
        columns["out.prediction"] = _numeric(values, with_nan=True)
    probas = pending.probas
    if _none_missing(probas):
        columns["out.probability"] = _numeric(_outputs(probas, _probability), with_nan=True)
    return _required_table(columns)


def _input_columns(columns: dict[str, pa.Array], block: tuple[list[str], np.ndarray]) -> None:
    """Add the ``in.`` columns of a Fortran-ordered block to ``columns``."""
    names, values = block
    with_nan = _with_nan(values)
    for j, name in enumerate(names):  # columns of the Fortran-ordered block: contiguous
        columns[f"in.{name}"] = _numeric(values[:, j], with_nan=bool(with_nan[j]))


def _from_batches(
    pending: _Pending, scratch: _Scratch | None
) -> tuple[tuple[list[str], np.ndarray], np.ndarray, np.ndarray | None] | None:
    """The inputs, predictions and probabilities of requests that all came in batches.

    Each batch is stacked once, however many of its requests were captured (about
    a tenth as many arrays as requests, under load), and each request's rows are
    picked out by one index where they are not simply every row of every batch in
    order. None when a request brought its own rows, or the batches differ in
    layout: the writer then takes each request's rows (`_unbatched`).
    """
    batches = pending.batches
    if not _none_missing(batches):
        return None
    unique = list(dict.fromkeys(batches))
    parts = [batch.rows for batch in unique]
    first = parts[0]
    names_of = pending.columns[0]
    if pending.columns.count(names_of) != len(pending.columns):
        return None
    if set(map(type, parts)) != {np.ndarray} or first.dtype.kind not in "biuf":
        return None
    if set(map(_dtype, parts)) != {first.dtype} or set(map(_ndim, parts)) != {2}:
        return None
    if set(map(_width, map(_shape, parts))) != {first.shape[1]}:
        return None
    probas = [batch.proba for batch in unique]
    with_proba = _none_missing(probas)
    if not with_proba and any(map(is_not, probas, repeat(None))):
        return None
    block = _stack(parts, scratch)
    prediction = _outputs([batch.predict for batch in unique], _flat)
    probability = _outputs(probas, _probability) if with_proba else None
    lengths = np.fromiter(map(len, parts), np.int64, len(parts))
    position = {batch: i for i, batch in enumerate(unique)}
    which = np.fromiter(map(position.__getitem__, batches), np.int64, len(batches))
    starts = (np.cumsum(lengths) - lengths)[which] + np.asarray(pending.starts, np.int64)
    sizes = np.asarray(pending.sizes, np.int64)
    ends = np.cumsum(sizes)
    if ends[-1] != len(block) or not np.array_equal(starts, ends - sizes):
        # Not every row of every batch, in order (a request dropped, a batch split
        # across flushes, or answers recorded out of order): pick each request's.
        index = np.repeat(starts - (ends - sizes), sizes) + np.arange(ends[-1])
        block = np.asfortranarray(block[index])
        prediction = prediction[index]
        probability = None if probability is None else probability[index]
    width = first.shape[1]
    names = list(names_of) if len(names_of) == width else [str(i) for i in range(width)]
    return (names, block), prediction, probability


def _unbatched(pending: _Pending) -> _Pending:
    """``pending`` with each request's own rows and outputs, sliced from its batch."""
    if all(map(is_, pending.batches, repeat(None))):
        return pending
    entries = []
    for entry in pending.entries:
        batch = entry[_BATCH]
        if batch is not None:
            start, end = entry[_BATCH + 1], entry[_BATCH + 1] + entry[_ROWS]
            proba = None if batch.proba is None else batch.proba[start:end]
            own = (batch.rows[start:end], entry[_INPUTS + 1], batch.predict[start:end], proba)
            entry = (*entry[:_INPUTS], *own, None, 0, entry[_ROWS])
        entries.append(entry)
    return _Pending(entries)


def _with_nan(values: np.ndarray) -> np.ndarray:
    """For each column of a 2-D numeric array, whether it may hold NaN.

    A column's sum is NaN when it holds one (or both infinities: a harmless yes);
    one vectorised pass instead of Arrow's per-value check in every conversion.
    """
    if values.dtype.kind != "f":
        return np.zeros(values.shape[1], dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        result: np.ndarray = np.isnan(np.add.reduce(values, axis=0))
    return result


def _numeric(values: np.ndarray, *, with_nan: bool = False) -> pa.Array:
    """A 1-D numeric array as Arrow over its own buffer, NaN as null if ``with_nan``.

    Not `pyarrow.array`: its conversion lets go of the GIL and takes it back many
    times per call, and while the request path holds the GIL each retake forces the
    event loop's thread to switch. Here numpy builds the buffers and Arrow wraps
    them, without letting go. Other kinds (text labels, booleans) go to Arrow.
    """
    import pyarrow as pa

    array = np.ascontiguousarray(values)
    if not array.dtype.isnative:  # big-endian data: Arrow holds native numbers only
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim != 1 or array.dtype.kind not in "iuf":
        return pa.array(array, from_pandas=True)
    validity, nulls = None, 0
    if with_nan and array.dtype.kind == "f":
        missing = np.isnan(array)
        nulls = int(np.count_nonzero(missing))
        if nulls:
            validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    kind = pa.from_numpy_dtype(array.dtype)
    return pa.Array.from_buffers(kind, len(array), [validity, pa.py_buffer(array)], nulls)


def _strings(values: Sequence[str]) -> pa.Array:
    """Python strings as an Arrow string array, built the way `_numeric` builds numbers."""
    import pyarrow as pa

    try:
        encoded = list(map(str.encode, values))
    except UnicodeEncodeError:  # a lone surrogate: Arrow's conversion says what it makes of it
        return pa.array(values, pa.string())
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
    if offsets[-1] >= 2**31:  # more text than a 32-bit offset reaches: let Arrow split it
        return pa.array(values, pa.string())
    data = pa.py_buffer(b"".join(encoded))
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets.astype(np.int32)), data)


def _required_table(columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    """One table of ``columns``; those without nulls marked required (see `write_capture`)."""
    import pyarrow as pa

    fields = [
        pa.field(name, array.type, nullable=array.null_count > 0) for name, array in columns.items()
    ]
    return pa.Table.from_arrays(list(columns.values()), schema=pa.schema(fields))


_dtype, _ndim, _shape, _size = (attrgetter(a) for a in ("dtype", "ndim", "shape", "size"))
_width, _contiguous = itemgetter(1), attrgetter("flags.c_contiguous")


def _none_missing(values: Sequence[Any]) -> bool:
    """Whether no value is None; in C, and not ``None in values``, which compares arrays."""
    return not any(map(is_, values, repeat(None)))


def _outputs(parts: Sequence[Any], each: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``each`` of every request's output, stacked: in one call when their shapes allow."""
    try:
        return each(np.concatenate(parts))  # the same shape past the first axis: one call
    except ValueError:
        return np.concatenate([each(np.asarray(p)) for p in parts])


def _uniform_block(
    inputs: Sequence[Any], columns: Sequence[tuple[str, ...]], scratch: _Scratch | None = None
) -> tuple[list[str], np.ndarray] | None:
    """The requests' inputs stacked as one 2-D array, or None.

    Only when they share names and one numeric dtype: the common case (arrays from
    the lean path, or all-float frames), without a frame per request.
    """
    import pandas as pd

    first = inputs[0]
    if isinstance(first, pd.DataFrame):
        names = [str(c) for c in first.columns]
        dtypes = set(first.dtypes)
        if len(dtypes) != 1 or next(iter(dtypes)).kind not in "biuf":
            return None
        dtype = next(iter(dtypes))
        parts = []
        for frame in inputs:
            if not isinstance(frame, pd.DataFrame) or list(frame.columns) != list(first.columns):
                return None
            if set(frame.dtypes) != {dtype}:
                return None
            parts.append(frame.to_numpy())
        return names, _stack(parts, scratch)
    if not isinstance(first, np.ndarray) or first.ndim != 2 or first.dtype.kind not in "biuf":
        return None
    names_of = columns[0]
    if columns.count(names_of) != len(columns):  # mostly the very same tuple: no walk
        return None
    # Each test one pass in C (`map`): a flush holds up to 10,000 requests.
    if set(map(type, inputs)) != {np.ndarray} or set(map(_dtype, inputs)) != {first.dtype}:
        return None
    if set(map(_ndim, inputs)) != {2} or set(map(_width, map(_shape, inputs))) != {first.shape[1]}:
        return None
    width = first.shape[1]
    names = list(names_of) if len(names_of) == width else [str(i) for i in range(width)]
    return names, _stack(inputs, scratch)


# numpy lets go of the GIL to copy this many elements or more (NPY_BEGIN_THREADS_THRESHOLDED).
_NUMPY_LETS_GO = 500


def _stack(parts: Sequence[np.ndarray], scratch: _Scratch | None = None) -> np.ndarray:
    """``parts`` stacked into one Fortran-ordered array: each column one contiguous run.

    numpy lets go of the GIL for every part of 500 values or more it copies, and
    taking it back from a busy request thread waits for that thread to yield: the
    table of 500 requests of 100 rows took 2.5 s to build beside a thread running
    Python (0.13 s this way). So such parts are gathered row by row with
    `memoryview` copies, which keep the GIL, and turned into columns by one numpy
    copy (one wait).
    """
    scratch = scratch or _Scratch()
    rows, width, dtype = sum(map(len, parts)), parts[0].shape[1], parts[0].dtype
    out = scratch.block(rows, width, dtype)
    if max(map(_size, parts)) < _NUMPY_LETS_GO or not all(map(_contiguous, parts)):
        np.concatenate(parts, out=out)
        return out
    by_rows = scratch.block(rows, width, dtype, "C")
    target = by_rows.reshape(-1).view(np.uint8).data
    start = 0
    for part in parts:
        data = part.reshape(-1).view(np.uint8).data
        target[start : start + len(data)] = data
        start += len(data)
    np.copyto(out, by_rows)
    return out


def _frame(inputs: Any, columns: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd

    if isinstance(inputs, pd.DataFrame):
        return inputs
    array = np.asarray(inputs)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    array = array.reshape(len(array), -1)
    names = list(columns)
    if len(names) != array.shape[1]:
        names = [str(i) for i in range(array.shape[1])]
    return pd.DataFrame(array, columns=names)


def _flat(values: np.ndarray) -> np.ndarray:
    array: np.ndarray = np.asarray(values)
    return array if array.ndim == 1 else array.reshape(len(array), -1)[:, 0]


def _probability(proba: np.ndarray) -> np.ndarray:
    if proba.ndim == 1:
        return proba.astype(np.float64)
    if proba.shape[1] == 2:
        return proba[:, 1].astype(np.float64)
    best: np.ndarray = np.max(proba, axis=1)
    return best.astype(np.float64)
