"""`ServedModel`: one model behind an adaptive batcher, hot-swapped when its alias moves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from conveyor.core.registry import ModelRef
from conveyor.errors import ConveyorError, NotFoundError, ValidationError
from conveyor.serving.errors import HTTPProblem

if TYPE_CHECKING:
    from conveyor.registry.loaded import LoadedModel
    from conveyor.registry.registry import Registry
    from conveyor.serving.metrics import Metrics

__all__ = ["Prediction", "ServedModel"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prediction:
    """The answer to one request: predictions, probabilities, and the version that gave them."""

    predict: np.ndarray
    proba: np.ndarray | None
    version: str
    number: int


@dataclass(slots=True)
class _Item:
    frame: pd.DataFrame
    proba: bool
    future: asyncio.Future[Prediction] = field(repr=False)


class ServedModel:
    """One model: its current version, a request queue and the batcher that drains it.

    Args:
        registry: where versions are loaded from.
        ref: ``name``, ``name/3`` or ``name@alias`` (an alias is polled for moves).
        metrics: where batch sizes and load times are counted.
        batch_wait_ms: the longest a batch waits for more requests once others are pending.
        max_batch: the most rows in one batch.
        poll_seconds: how often an alias is read.
    """

    def __init__(
        self,
        registry: Registry,
        ref: str,
        metrics: Metrics,
        *,
        batch_wait_ms: float = 2.0,
        max_batch: int = 64,
        poll_seconds: float = 2.0,
    ) -> None:
        self.registry = registry
        self.ref = ModelRef.parse(ref)
        self.name = self.ref.name
        self.metrics = metrics
        self.batch_wait = batch_wait_ms / 1000
        self.max_batch = max_batch
        self.poll_seconds = poll_seconds
        started = time.perf_counter()
        self.current: LoadedModel = registry.load_model(str(self.ref))
        metrics.model_loaded(self.name, time.perf_counter() - started)
        self._queue: asyncio.Queue[_Item] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def version_label(self) -> str:
        """``name/version`` of the version serving now."""
        return f"{self.name}/{self.current.version.version}"

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch."""
        return 0 if self._queue is None else self._queue.qsize()

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        """Start the batcher and, for an alias, the poller (inside the running loop)."""
        self._queue = asyncio.Queue()
        self._tasks.append(asyncio.create_task(self._batcher()))
        if self.ref.alias is not None:
            self._tasks.append(asyncio.create_task(self._poller()))

    async def stop(self) -> None:
        """Cancel the background tasks."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- predicting --------------------------------------------------------
    def validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` checked against the current signature (`HTTPProblem` 422 if it breaks it)."""
        from conveyor.registry.signature import prepare_input

        try:
            prepared = prepare_input(self.current.signature, frame)
        except ValidationError as exc:
            raise HTTPProblem(422, str(exc), exc.field, exc.rule) from exc
        return prepared if isinstance(prepared, pd.DataFrame) else frame

    async def predict(self, frame: pd.DataFrame, *, proba: bool = False) -> Prediction:
        """Predict on ``frame`` (already validated) through the batcher."""
        if self._queue is None:
            raise HTTPProblem(503, "the model is not started")
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(frame, proba, future))
        return await future

    async def _batcher(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            items = [await queue.get()]
            rows = len(items[0].frame)
            # Only wait for more when others are already pending: a lone request goes now.
            if not queue.empty():
                deadline = time.perf_counter() + self.batch_wait
                while rows < self.max_batch:
                    if queue.empty():
                        remaining = deadline - time.perf_counter()
                        if remaining <= 0:
                            break
                        try:
                            item = await asyncio.wait_for(queue.get(), remaining)
                        except TimeoutError:
                            break
                    else:
                        item = queue.get_nowait()
                    items.append(item)
                    rows += len(item.frame)
            await self._run_batch(items)

    async def _run_batch(self, items: list[_Item]) -> None:
        model = self.current  # in-flight batches finish on the version they started with
        self.metrics.batch(self.name, sum(len(i.frame) for i in items))
        want_proba = model.has_predict_proba and any(i.proba for i in items)
        try:
            if len(items) == 1:
                frame = items[0].frame
            else:
                frame = pd.concat([i.frame for i in items], ignore_index=True)
            pred, proba = await asyncio.to_thread(_predict, model, frame, want_proba)
        except Exception:
            if len(items) > 1:  # isolate the request at fault
                for item in items:
                    await self._run_batch([item])
                return
            problem = await asyncio.to_thread(_diagnose, model, items[0])
            if not items[0].future.done():
                items[0].future.set_exception(problem)
            return
        number = model.version.version
        label = f"{self.name}/{number}"
        start = 0
        for item in items:
            end = start + len(item.frame)
            part = None if proba is None else proba[start:end]
            if not item.future.done():
                item.future.set_result(Prediction(pred[start:end], part, label, number))
            start = end

    # -- hot swap ----------------------------------------------------------
    async def _poller(self) -> None:
        assert self.ref.alias is not None
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.refresh()
            except Exception:
                log.exception("serving %s: checking alias %s failed", self.name, self.ref.alias)

    async def refresh(self) -> bool:
        """Read the alias; load, check and swap in the version it now names.

        Returns:
            Whether a new version was swapped in. A failed load keeps the old one.
        """
        if self.ref.alias is None:
            return False
        target = await asyncio.to_thread(self.registry.get_alias, self.name, self.ref.alias)
        if target.version == self.current.version.version:
            return False
        started = time.perf_counter()
        try:
            loaded = await asyncio.to_thread(self._load, f"{self.name}/{target.version}")
        except Exception:
            log.exception("serving %s: loading version %s failed", self.name, target.version)
            return False
        self.metrics.model_loaded(self.name, time.perf_counter() - started)
        self.current = loaded  # one assignment: the swap is atomic
        log.info("serving %s: now version %s", self.name, target.version)
        return True

    def _load(self, ref: str) -> LoadedModel:
        loaded = self.registry.load_model(ref)
        check = getattr(loaded, "check", None)
        if callable(check):
            check()
        return loaded


def _predict(model: LoadedModel, frame: pd.DataFrame, proba: bool) -> tuple[Any, Any]:
    # Every request was checked against the signature (`ServedModel.validate`) before it
    # was queued, so the batch goes to the model itself, not through the check again.
    raw = model.model
    if not proba:
        return np.asarray(raw.predict(frame)), None
    probs = np.asarray(raw.predict_proba(frame))
    classes = getattr(raw, "classes_", None)
    if classes is not None and len(classes) == probs.shape[1]:
        # One call: the predicted class is the most probable one, as predict() would say.
        return np.asarray(classes)[np.argmax(probs, axis=1)], probs
    return np.asarray(raw.predict(frame)), probs


def _diagnose(model: LoadedModel, item: _Item) -> HTTPProblem:
    """Why ``item`` failed alone: a 422 naming the rule, or a logged 503."""
    try:
        _predict(model, item.frame, item.proba)
    except ValidationError as exc:
        problem = HTTPProblem(422, str(exc), exc.field, exc.rule)
    except NotFoundError as exc:
        problem = HTTPProblem(422, str(exc), "input", "the model could not use this input")
    except (ValueError, TypeError, KeyError, IndexError, ConveyorError) as exc:
        problem = HTTPProblem(422, f"the model refused this input: {exc}", "input", "model")
    except Exception:
        log.exception("serving %s: prediction failed", model.version.ref)
        problem = HTTPProblem(503, "the model failed on this request; it was logged")
    else:
        problem = HTTPProblem(503, "the prediction failed transiently; retry")
    return problem
