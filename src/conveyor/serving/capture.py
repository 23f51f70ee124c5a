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
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from conveyor.stores.artifacts.base import ByteStore

__all__ = ["CaptureEntry", "CaptureWriter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CaptureEntry:
    """One answered request (or its shadow copy), as the request path hands it over.

    ``inputs`` holds the validated rows: a DataFrame, or an array whose columns are
    named by ``columns``. It is None for a request refused before it had validated rows;
    that request is written as one row without inputs or outputs.
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

    @property
    def rows(self) -> int:
        """The rows this entry writes."""
        return 1 if self.inputs is None else max(len(self.inputs), 1)


_FLUSH_ENTRIES = 10_000


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
        self._buffer: list[CaptureEntry] = []
        self._rows = 0
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
        n = entry.rows
        with self._lock:
            if self._rows + n > self.max_rows or self._closing:
                self.dropped_rows += n
                return False
            self._buffer.append(entry)
            self._rows += n
            self.captured_rows += n
            # Many small entries (one-row requests) are written sooner: each is a live
            # object the garbage collector walks until it is written.
            full = self._rows >= self.flush_rows or len(self._buffer) >= _FLUSH_ENTRIES
        if full:
            self._wake.set()
        return True

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
        next_flush = time.monotonic() + self.window_s
        while True:
            self._wake.wait(max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            closing = self._closing
            if closing or self._rows >= self.flush_rows or time.monotonic() >= next_flush:
                self.flush()
                next_flush = time.monotonic() + self.window_s
            if closing:
                return

    def flush(self) -> list[str]:
        """Write every buffered row now; returns the keys written. Never raises."""
        from conveyor.stores.capture import write_capture

        with self._lock:
            entries, self._buffer = self._buffer, []
            self._rows = 0
        keys: list[str] = []
        groups: dict[tuple[str, int], list[CaptureEntry]] = {}
        for entry in entries:
            groups.setdefault((entry.model, entry.version), []).append(entry)
        for (model, _), group in groups.items():
            try:
                table = capture_table(group)
                key = write_capture(self.store, model, table)
            except Exception:
                log.exception("capture: writing %d rows of %s failed", len(group), model)
                self.failed_writes += 1
                self.dropped_rows += sum(e.rows for e in group)
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


def capture_table(entries: list[CaptureEntry]) -> pa.Table:
    """The capture-log table of ``entries`` (the columns of `conveyor.stores.capture`)."""
    import pyarrow as pa

    answered = [e for e in entries if e.inputs is not None and len(e.inputs)]
    refused = [e for e in entries if e.inputs is None or not len(e.inputs)]
    tables = []
    if answered:
        tables.append(_answered_table(answered))
    if refused:
        tables.append(_meta_table(refused, [1] * len(refused)))
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def _meta_table(entries: list[CaptureEntry], counts: list[int]) -> pa.Table:
    import pyarrow as pa

    counts_array = np.asarray(counts, dtype=np.int64)

    def each(values: list[Any], dtype: Any) -> pa.Array:
        return pa.array(np.repeat(np.asarray(values, dtype=dtype), counts_array))

    def text(values: list[str]) -> pa.Array:
        return pa.array(np.repeat(np.asarray(values, dtype=object), counts_array), pa.string())

    rows = np.concatenate([np.arange(c, dtype=np.int32) for c in counts])
    return pa.table(
        {
            "request_id": text([e.request_id for e in entries]),
            "row": pa.array(rows, pa.int32()),
            "timestamp": each([e.timestamp_ms for e in entries], np.int64),
            "model": text([e.model for e in entries]),
            "version": each([e.version for e in entries], np.int64),
            "route": text([e.route for e in entries]),
            "latency_ms": each([e.latency_ms for e in entries], np.float64),
            "status": each([e.status for e in entries], np.int16),
        }
    )


def _answered_table(entries: list[CaptureEntry]) -> pa.Table:
    import pandas as pd
    import pyarrow as pa

    table = _meta_table(entries, [len(e.inputs) for e in entries])
    block = _uniform_block(entries)
    if block is not None:  # one array for every request: no frame per request
        names, values = block
        for j, name in enumerate(names):
            table = table.append_column(f"in.{name}", pa.array(values[:, j], from_pandas=True))
    else:
        frames = [_frame(e) for e in entries]
        inputs = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        for name in inputs.columns:
            column = inputs[name]
            if isinstance(column.dtype, pd.CategoricalDtype):
                column = column.astype(column.cat.categories.dtype)
            array = pa.array(np.asarray(column), from_pandas=True)
            table = table.append_column(f"in.{name}", array)
    predictions = [e.prediction for e in entries]
    if all(p is not None for p in predictions):
        values = np.concatenate([_flat(p) for p in predictions if p is not None])
        table = table.append_column("out.prediction", pa.array(values, from_pandas=True))
    probas = [e.proba for e in entries]
    if all(p is not None for p in probas):
        parts = [_probability(np.asarray(p)) for p in probas if p is not None]
        table = table.append_column("out.probability", pa.array(np.concatenate(parts)))
    return table


def _uniform_block(entries: list[CaptureEntry]) -> tuple[list[str], np.ndarray] | None:
    """The inputs of ``entries`` stacked as one 2-D array, or None.

    Only when they share names and one numeric dtype: the common case (arrays from
    the lean path, or all-float frames), without a frame per request.
    """
    import pandas as pd

    first = entries[0].inputs
    if isinstance(first, pd.DataFrame):
        names = [str(c) for c in first.columns]
        dtypes = set(first.dtypes)
        if len(dtypes) != 1 or next(iter(dtypes)).kind not in "biuf":
            return None
        dtype = next(iter(dtypes))
        parts = []
        for entry in entries:
            frame = entry.inputs
            if not isinstance(frame, pd.DataFrame) or list(frame.columns) != list(first.columns):
                return None
            if set(frame.dtypes) != {dtype}:
                return None
            parts.append(frame.to_numpy())
        return names, np.concatenate(parts)
    if not isinstance(first, np.ndarray) or first.ndim != 2 or first.dtype.kind not in "biuf":
        return None
    columns = entries[0].columns
    for entry in entries:
        array = entry.inputs
        if (
            not isinstance(array, np.ndarray)
            or array.ndim != 2
            or array.shape[1] != first.shape[1]
            or array.dtype != first.dtype
            or entry.columns != columns
        ):
            return None
    names = (
        list(columns) if len(columns) == first.shape[1] else [str(i) for i in range(first.shape[1])]
    )
    return names, np.concatenate([e.inputs for e in entries])


def _frame(entry: CaptureEntry) -> pd.DataFrame:
    import pandas as pd

    inputs = entry.inputs
    if isinstance(inputs, pd.DataFrame):
        return inputs
    array = np.asarray(inputs)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    array = array.reshape(len(array), -1)
    names = list(entry.columns)
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
