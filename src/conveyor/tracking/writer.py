"""The background writer: logging calls append to memory, one thread commits them in batches.

A ``log_metric`` call only appends a tuple under a lock (about a microsecond).
The writer thread wakes every ``interval`` seconds, when a batch grows past
``batch_size``, or when someone calls `BatchWriter.flush`, and commits what
it gathered in one transaction. The queue is bounded: past ``max_pending``
points a logging call waits for the writer (back-pressure), so memory stays
bounded however fast a training loop logs. The same thread sends heartbeats
for the runs it knows are alive.
"""

from __future__ import annotations

import os
import threading
import time
import weakref

from conveyor.core.entities import ArtifactRecord, LineageEdge, RunStatus
from conveyor.errors import StoreError
from conveyor.stores.metadata.base import MetricRow, NewRun, RunStore, WriteBatch

__all__ = ["BatchWriter", "flush_all"]

_writers: weakref.WeakSet[BatchWriter] = weakref.WeakSet()


class BatchWriter:
    """Buffers writes for one `RunStore` and commits them from a background thread.

    Args:
        store: where batches are written.
        interval: the longest a write waits in memory before the writer commits it.
        batch_size: a batch this large is committed at once, without waiting.
        max_pending: past this many buffered points, logging calls wait (back-pressure).
        heartbeat_seconds: how often live runs' heartbeats are renewed.
    """

    def __init__(
        self,
        store: RunStore,
        *,
        interval: float = 0.2,
        batch_size: int = 50_000,
        max_pending: int = 1_000_000,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._interval = interval
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._heartbeat_seconds = heartbeat_seconds
        self._reset()
        _writers.add(self)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._batch = WriteBatch()
        self._queued = 0  # items ever enqueued
        self._written = 0  # items ever committed (or given up on)
        self._urgent = False
        self._closing = False
        self._error: BaseException | None = None
        self._alive: dict[str, None] = {}  # run ids to heartbeat, in start order
        self._next_beat = 0.0
        self._thread: threading.Thread | None = None

    # -- the hot path --------------------------------------------------------
    def add_metric(self, row: MetricRow) -> None:
        """Buffer one metric point."""
        with self._cond:
            metrics = self._batch.metrics
            metrics.append(row)
            self._queued += 1
            if len(metrics) >= self._batch_size:
                self._wake_locked(len(metrics) >= self._max_pending)

    def add_metrics(self, rows: list[MetricRow]) -> None:
        """Buffer many metric points at once."""
        with self._cond:
            metrics = self._batch.metrics
            metrics.extend(rows)
            self._queued += len(rows)
            if len(metrics) >= self._batch_size:
                self._wake_locked(len(metrics) >= self._max_pending)

    def add_params(self, rows: list[tuple[str, str, str]]) -> None:
        """Buffer params ``(run_id, key, value)``."""
        with self._cond:
            self._batch.params.extend(rows)
            self._queued += len(rows)
            self._ensure_thread()

    def add_tags(self, rows: list[tuple[str, str, str]]) -> None:
        """Buffer tags ``(run_id, key, value)``."""
        with self._cond:
            self._batch.tags.extend(rows)
            self._queued += len(rows)
            self._ensure_thread()

    def add_records(self, artifacts: list[ArtifactRecord], lineage: list[LineageEdge]) -> None:
        """Buffer artifact records (their bytes already stored) and lineage edges."""
        with self._cond:
            self._batch.artifacts.extend(artifacts)
            self._batch.lineage.extend(lineage)
            self._queued += len(artifacts) + len(lineage)
            self._ensure_thread()

    # -- run lifecycle -------------------------------------------------------
    def create(self, run: NewRun) -> None:
        """Buffer a new run (inserted before anything else of its batch) and heartbeat it."""
        with self._cond:
            self._batch.runs.append(run)
            self._queued += 1
            self._alive[run.id] = None
            self._ensure_thread()

    def track(self, run_id: str) -> None:
        """Start sending heartbeats for a run."""
        with self._cond:
            self._alive[run_id] = None
            self._ensure_thread()

    def end(self, run_id: str, status: RunStatus, at_ms: int) -> None:
        """Buffer the end of a run and stop its heartbeats."""
        with self._cond:
            self._alive.pop(run_id, None)
            self._batch.ends.append((run_id, status, at_ms))
            self._queued += 1
            self._ensure_thread()

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything buffered before this call is committed.

        Raises:
            StoreError: the writer could not commit a batch (the cause is chained).
        """
        with self._cond:
            target = self._queued
            if self._written >= target:
                self._raise_pending_error()
                return
            self._ensure_thread()
            self._urgent = True
            self._cond.notify_all()
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._written < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise StoreError(f"flush timed out after {timeout} s")
                self._cond.wait(remaining)
            self._raise_pending_error()

    def close(self) -> None:
        """Flush and stop the thread."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=10)

    # -- the writer thread -----------------------------------------------------
    def _wake_locked(self, wait: bool) -> None:
        self._ensure_thread()
        self._urgent = True
        self._cond.notify_all()
        while wait and len(self._batch.metrics) >= self._max_pending and self._error is None:
            self._cond.wait()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="conveyor-writer", daemon=True)
            self._thread.start()

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise StoreError(f"the tracking writer could not commit: {err}") from err

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._wait_for_work_locked()
                if self._closing and not len(self._batch):
                    return
                batch, self._batch = self._batch, WriteBatch()
                target = self._queued
                self._urgent = False
                self._cond.notify_all()  # logging calls blocked on back-pressure may go on
                self._add_heartbeats_locked(batch)
            error = self._commit(batch)
            with self._cond:
                self._written = target
                if error is not None:
                    self._error = error
                self._cond.notify_all()

    def _wait_for_work_locked(self) -> None:
        while not (self._urgent or self._closing):
            pending = len(self._batch) > 0
            if not pending and not self._alive:
                self._cond.wait()
                continue
            timeout = self._interval if pending else self._next_beat - time.monotonic()
            if timeout <= 0 or not self._cond.wait(timeout):
                return

    def _add_heartbeats_locked(self, batch: WriteBatch) -> None:
        now = time.monotonic()
        if self._alive and now >= self._next_beat:
            at = int(time.time() * 1000)
            batch.heartbeats.extend((run_id, at) for run_id in self._alive)
            self._next_beat = now + self._heartbeat_seconds

    def _commit(self, batch: WriteBatch) -> BaseException | None:
        if not len(batch):
            return None
        try:
            self._store.write(batch)
        except Exception as exc:  # kept and raised to the next flush(): never lost silently
            return exc
        return None


def _after_fork_in_child() -> None:
    # A forked child inherits the buffers and lock of a thread that does not exist in it.
    for writer in list(_writers):
        writer._reset()


def flush_all() -> None:
    """Flush every writer of this process (for interpreter exit)."""
    for writer in list(_writers):
        try:
            writer.flush(timeout=30)
        except Exception as exc:  # exit must go on; say what was lost
            _warn(f"conveyor: could not flush tracking data at exit: {exc}")


def _warn(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


os.register_at_fork(after_in_child=_after_fork_in_child)
