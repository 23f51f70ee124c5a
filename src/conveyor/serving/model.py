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
from conveyor.serving.fastpath import Predictor, Rows

if TYPE_CHECKING:
    from conveyor.registry.loaded import LoadedModel
    from conveyor.registry.registry import Registry
    from conveyor.serving.metrics import Metrics

__all__ = ["Batch", "Prediction", "ServedModel"]

log = logging.getLogger(__name__)


class Batch:
    """A batch predicted in one call: its rows, stacked, and its outputs (for capture).

    Each request's answer points here and says where its rows start, so the capture
    log can take a whole batch at once instead of every request's own arrays.
    """

    __slots__ = ("predict", "proba", "rows")

    def __init__(self, rows: np.ndarray, predict: np.ndarray, proba: np.ndarray | None) -> None:
        self.rows, self.predict, self.proba = rows, predict, proba


@dataclass(frozen=True, slots=True)
class Prediction:
    """The answer to one request: predictions, probabilities, and the version that gave them.

    ``batch`` is the batch it was predicted in, when its rows were stacked as they
    came (`Predictor.predict_batch`), and ``start`` its first row there.
    """

    predict: np.ndarray
    proba: np.ndarray | None
    version: str
    number: int
    batch: Batch | None = None
    start: int = 0


_Answer = Prediction | HTTPProblem


@dataclass(slots=True)
class _Item:
    rows: Any  # checked input: an array in the signature's layout, or a DataFrame
    proba: bool
    future: asyncio.Future[Prediction] | None = field(default=None, repr=False)


class ServedModel:
    """One model: its current version, and the batcher that gathers its requests.

    Batching: the first request that finds no batch open leads one; requests that
    arrive while it gathers join it, and it predicts them in one call and hands each
    its rows. It gathers for one turn of the event loop (what arrived together, at no
    wall-clock wait) and, while an earlier batch is still running in a worker thread,
    until that ends; a lone request under low load goes straight to the model. A batch
    cheap enough (`fastpath.INLINE_SECONDS`) is predicted on the event loop itself.

    Args:
        registry: where versions are loaded from.
        ref: ``name``, ``name/3`` or ``name@alias`` (an alias is polled for moves).
        metrics: where batch sizes and load times are counted.
        batch_wait_ms: 0 turns gathering off (each request is predicted alone); any
            other value lets requests that arrived together share a batch.
        max_batch: the most rows in one batch.
        poll_seconds: how often an alias is read.
        onnx: whether a version may be predicted through onnxruntime where that is
            verified to give the native model's answers.
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
        onnx: bool = True,
    ) -> None:
        self.registry = registry
        self.ref = ModelRef.parse(ref)
        self.name = self.ref.name
        self.metrics = metrics
        self.gather = batch_wait_ms > 0
        self.max_batch = max_batch
        self.poll_seconds = poll_seconds
        self.onnx = onnx
        started = time.perf_counter()
        loaded = registry.load_model(str(self.ref))
        self._active: tuple[LoadedModel, Predictor] = (loaded, Predictor(loaded, onnx=onnx))
        metrics.model_loaded(self.name, time.perf_counter() - started)
        self._started = False
        self._open: list[_Item] | None = None  # the batch now gathering
        self._open_rows = 0
        self._waiting = 0  # requests gathered or queued, not yet predicted
        self._lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def current(self) -> LoadedModel:
        """The version serving now."""
        return self._active[0]

    @property
    def predictor(self) -> Predictor:
        """How the version serving now predicts (`fastpath.Predictor`)."""
        return self._active[1]

    @property
    def version_label(self) -> str:
        """``name/version`` of the version serving now."""
        return f"{self.name}/{self.current.version.version}"

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch."""
        return self._waiting

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        """Open for requests and, for an alias, start the poller (inside the running loop)."""
        self._lock = asyncio.Lock()
        self._started = True
        if self.ref.alias is not None:
            self._tasks.append(asyncio.create_task(self._poller()))

    async def stop(self) -> None:
        """Cancel the background tasks."""
        self._started = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- predicting --------------------------------------------------------
    def validate(self, batch: pd.DataFrame | Rows) -> Any:
        """``batch`` checked against the current signature (`HTTPProblem` 422 if it breaks it).

        Rows laid out for the current signature are ready as they are; a frame is
        checked column by column and comes back in the signature's order and dtypes.
        """
        from conveyor.registry.signature import prepare_input

        signature = self.current.signature
        if isinstance(batch, Rows):
            if batch.signature is signature or batch.signature == signature:
                return batch.array
            batch = batch.frame()  # parsed for a version swapped out since: check it anew
        try:
            return prepare_input(signature, batch)
        except ValidationError as exc:
            raise HTTPProblem(422, str(exc), exc.field, exc.rule) from exc

    async def predict(self, rows: Any, *, proba: bool = False) -> Prediction:
        """Predict on ``rows`` (from `validate`), batched with the requests beside it."""
        if not self._started or self._lock is None:
            raise HTTPProblem(503, "the model is not started")
        count = len(rows)
        batch = self._open
        if batch is not None and self._open_rows + count <= self.max_batch:
            future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
            batch.append(_Item(rows, proba, future))
            self._open_rows += count
            self._waiting += 1
            return await future
        mine = _Item(rows, proba)
        batch = [mine]
        self._waiting += 1
        if self.gather:
            self._open, self._open_rows = batch, count
        ran = False
        try:
            if self.gather:
                await asyncio.sleep(0)  # one loop turn: requests parsed beside this one join
            async with self._lock:  # an earlier batch in a thread: keep gathering till it ends
                if self._open is batch:
                    self._open = None
                ran = True
                return await self._run(batch, mine)
        finally:
            if not ran:  # cancelled while gathering: the others still get their answers
                if self._open is batch:
                    self._open = None
                others = [i for i in batch if i is not mine]
                self._waiting -= 1
                if others:
                    self._tasks.append(asyncio.create_task(self._orphans(others)))

    async def _orphans(self, items: list[_Item]) -> None:
        assert self._lock is not None
        async with self._lock:
            self._waiting -= len(items)
            self._hand_out(items, await self._results(items), None)

    async def _run(self, items: list[_Item], mine: _Item) -> Prediction:
        """Predict ``items``; hand the others their answers, return ``mine``'s."""
        self._waiting -= len(items)
        model, predictor = self._active  # in-flight batches finish on the version they began
        results = _predict_now(self.name, model, predictor, items) if predictor.inline else None
        if results is None:
            # In a task of its own, so that the others get their answers even if this
            # request is cancelled meanwhile.
            task = asyncio.create_task(self._results(items, (model, predictor)))
            task.add_done_callback(lambda done: self._finished(items, done, mine))
            results = await asyncio.shield(task)
        else:
            self._hand_out(items, results, mine)
        self.metrics.batch(self.name, sum(len(i.rows) for i in items))
        answer = results[items.index(mine)]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _finished(self, items: list[_Item], done: asyncio.Task[list[_Answer]], mine: _Item) -> None:
        if done.cancelled() or done.exception() is not None:
            failed = HTTPProblem(503, "the prediction was interrupted; retry")
            self._hand_out(items, [failed] * len(items), mine)
        else:
            self._hand_out(items, done.result(), mine)

    @staticmethod
    def _hand_out(items: list[_Item], results: list[_Answer], mine: _Item | None) -> None:
        for item, result in zip(items, results, strict=True):
            if item is mine or item.future is None or item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    async def _results(
        self, items: list[_Item], active: tuple[LoadedModel, Predictor] | None = None
    ) -> list[_Answer]:
        """Each item's answer: predicted together in a worker thread, else one by one."""
        model, predictor = active or self._active
        results = await asyncio.to_thread(_predict_now, self.name, model, predictor, items)
        if results is not None:
            return results
        if len(items) > 1:  # isolate the request at fault
            out: list[_Answer] = []
            for item in items:
                out.extend(await self._results([item], (model, predictor)))
            return out
        return [await asyncio.to_thread(_diagnose, predictor, items[0])]

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
            loaded, loaded_predictor = await asyncio.to_thread(
                self._load, f"{self.name}/{target.version}"
            )
        except Exception:
            log.exception("serving %s: loading version %s failed", self.name, target.version)
            return False
        self.metrics.model_loaded(self.name, time.perf_counter() - started)
        self._active = (loaded, loaded_predictor)  # one assignment: the swap is atomic
        log.info("serving %s: now version %s", self.name, target.version)
        return True

    def _load(self, ref: str) -> tuple[LoadedModel, Predictor]:
        loaded = self.registry.load_model(ref)
        check = getattr(loaded, "check", None)
        if callable(check):
            check()
        return loaded, Predictor(loaded, onnx=self.onnx)


def _predict_now(
    name: str, model: LoadedModel, predictor: Predictor, items: list[_Item]
) -> list[_Answer] | None:
    """Each item's `Prediction` from one call, or None if the call failed."""
    want_proba = any(i.proba for i in items)
    try:
        rows, pred, proba = predictor.predict_batch([i.rows for i in items], want_proba)
    except Exception:
        return None
    number = model.version.version
    label = f"{name}/{number}"
    batch = None if rows is None else Batch(rows, pred, proba)
    answers: list[_Answer] = []
    start = 0
    for item in items:
        end = start + len(item.rows)
        part = None if proba is None or not item.proba else proba[start:end]
        answers.append(Prediction(pred[start:end], part, label, number, batch, start))
        start = end
    return answers


def _diagnose(predictor: Predictor, item: _Item) -> HTTPProblem:
    """Why ``item`` failed alone: a 422 naming the rule, or a logged 503."""
    try:
        predictor.predict([item.rows], item.proba)
    except ValidationError as exc:
        problem = HTTPProblem(422, str(exc), exc.field, exc.rule)
    except NotFoundError as exc:
        problem = HTTPProblem(422, str(exc), "input", "the model could not use this input")
    except (ValueError, TypeError, KeyError, IndexError, ConveyorError) as exc:
        problem = HTTPProblem(422, f"the model refused this input: {exc}", "input", "model")
    except Exception:
        log.exception("serving %s: prediction failed", predictor.model.version.ref)
        problem = HTTPProblem(503, "the model failed on this request; it was logged")
    else:
        problem = HTTPProblem(503, "the prediction failed transiently; retry")
    return problem
