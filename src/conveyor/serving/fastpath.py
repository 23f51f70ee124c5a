"""The lean request path: numeric rows straight into one array, and the fastest verified predictor.

A request body whose rows are plain numbers, for a model whose signature is all
numeric, never becomes a DataFrame: `rows_array` turns the parsed JSON into one
2-D array in the signature's column order and dtype (`Rows`), checked with C-level
passes instead of per-row Python. Anything else (strings, booleans, nulls, missing
columns…) returns None and takes the checked DataFrame path, so every error message
stays the one that path gives.

`Predictor` picks, once per loaded version, how a batch is predicted: an ONNX
session (a scikit-learn tree model converted with skl2onnx when the version is
loaded), the native model on an array, or the native model on a DataFrame, each
used only where it reproduces the native model's output on the version's stored
input example (labels exactly, numbers within `outputs_match`'s tolerance). It
also times a prediction there, to decide whether a batch is cheap enough to predict
on the event loop.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from operator import is_, itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from conveyor.core.registry import Signature

if TYPE_CHECKING:
    from conveyor.registry.loaded import LoadedModel

__all__ = ["INLINE_SECONDS", "Plan", "Predictor", "Rows", "plan_for", "rows_array"]

log = logging.getLogger(__name__)

# A batch predicted faster than this on the example runs on the event loop: the hop to
# a worker thread (and back) costs more than it saves.
INLINE_SECONDS = 0.001
_NUMBERS = frozenset({int, float})
_FLOAT_DTYPES = frozenset({"float64", "float32"})
_SMALL = 256  # values: up to this many, rows are checked in Python
# scikit-learn models whose own predict casts X to float32 (trees): a float32 ONNX
# session compares the same numbers, so its answers match beyond the example too.
# Other models stay native; on arrays they are fast enough already.
_FLOAT32_TREES = frozenset(
    {
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "GradientBoostingClassifier",
        "GradientBoostingRegressor",
    }
)


@dataclass(frozen=True, slots=True)
class Plan:
    """How numeric rows become the model's array.

    Attributes:
        names: the columns in the signature's order (empty for a tensor signature).
        dtype: the array's dtype.
        width: values per row.
        integer: whether the columns are integers (float values are then refused).
    """

    names: tuple[str, ...]
    dtype: np.dtype[Any]
    width: int
    integer: bool


@dataclass(frozen=True, slots=True)
class Rows:
    """Request rows already in the model's layout: the lean path's stand-in for a frame.

    Attributes:
        array: one row per request row, the signature's columns in order.
        signature: the signature it was laid out for.
    """

    array: np.ndarray
    signature: Signature

    def __len__(self) -> int:
        return len(self.array)

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with the signature's column names (the checked path)."""
        names = [c.name for c in self.signature.columns]
        return pd.DataFrame(self.array, columns=names or None)


_PLANS: dict[int, tuple[Signature, Plan | None]] = {}


def plan_for(signature: Signature) -> Plan | None:
    """The lean plan for ``signature``: all columns float (one dtype) or all int64, else None.

    Cached by identity: a served version keeps one signature object, and hashing a
    signature of many columns on every request would cost more than the lookup saves.
    """
    cached = _PLANS.get(id(signature))
    if cached is not None and cached[0] is signature:
        return cached[1]
    if len(_PLANS) > 256:
        _PLANS.clear()
    plan = _plan(signature)
    _PLANS[id(signature)] = (signature, plan)
    return plan


def _plan(signature: Signature) -> Plan | None:
    if signature.kind == "tensor":
        shape = signature.shape or ()
        if len(shape) != 2 or shape[1] is None or signature.dtype is None:
            return None
        if signature.dtype in _FLOAT_DTYPES or signature.dtype == "int64":
            dtype = np.dtype(signature.dtype)
            return Plan((), dtype, int(shape[1]), dtype.kind == "i")
        return None
    dtypes = {c.dtype for c in signature.columns}
    if len(dtypes) != 1 or not signature.columns:
        return None
    (only,) = dtypes
    if only not in _FLOAT_DTYPES and only != "int64":
        return None
    names = tuple(c.name for c in signature.columns)
    dtype = np.dtype(only)
    return Plan(names, dtype, len(names), dtype.kind == "i")


def rows_array(
    rows: Any, signature: Signature, columns: Sequence[Any] | None = None
) -> Rows | None:
    """``rows`` (lists of numbers, or objects keyed by column) as `Rows`, or None if not lean.

    Args:
        rows: the parsed ``instances`` / ``inputs`` / ``data`` list.
        signature: the served version's signature.
        columns: the names of the values in each row list (``dataframe_split``), if given;
            extra ones are dropped, as the checked path drops extra columns.

    Returns:
        None when the rows hold anything but numbers the signature takes, or have the
        wrong shape: the checked path then answers (with its own error if any).
    """
    plan = plan_for(signature)
    if plan is None or type(rows) is not list or not rows:
        return None
    first = type(rows[0])
    pick: list[int] | None = None
    if first is dict:
        if not plan.names or set(map(type, rows)) != {dict}:
            return None
        getter = itemgetter(*plan.names)
        try:
            table = list(map(getter, rows)) if plan.width > 1 else [[v] for v in map(getter, rows)]
        except KeyError:
            return None
        width = plan.width
    elif first is list:
        if set(map(type, rows)) != {list}:
            return None
        table = rows
        width = plan.width
        if columns is not None:
            pick = _positions(columns, plan)
            if pick is None:
                return None
            width = len(columns)
    else:
        return None
    try:
        array = np.asarray(table)
    except (ValueError, TypeError, OverflowError):  # ragged rows
        return None
    kinds = "i" if plan.integer else "if"
    if array.ndim != 2 or array.shape[1] != width or array.dtype.kind not in kinds:
        return None  # strings, nulls, huge integers, nested lists, floats for integers
    if _has_booleans(table, array):
        return None
    array = array.astype(plan.dtype, copy=False)
    if pick is not None:
        array = array[:, pick]
    return Rows(array, signature)


def _has_booleans(table: Sequence[Sequence[Any]], array: np.ndarray) -> bool:
    """Whether a JSON true/false hides in ``array`` (numpy reads them as 1 and 0).

    A few rows are looked at value by value (cheaper than numpy's calls); more rows
    only where a cell equals 0 or 1: few, in most data.
    """
    if array.size <= _SMALL:
        return any(type(v) is bool for row in table for v in row)
    rows, cols = np.nonzero((array == 0) | (array == 1))
    return any(type(table[i][j]) is bool for i, j in zip(rows.tolist(), cols.tolist(), strict=True))


def _positions(columns: Sequence[Any], plan: Plan) -> list[int] | None:
    if not plan.names or len(set(columns)) != len(columns):
        return None
    where = {name: i for i, name in enumerate(columns)}
    if not all(name in where for name in plan.names):
        return None
    return [where[name] for name in plan.names]


def stack_columns(columns: dict[str, np.ndarray], signature: Signature) -> Rows | None:
    """V2 inputs, one 1-D numeric array per column, as `Rows` (None if not lean)."""
    plan = plan_for(signature)
    if plan is None or not plan.names or not all(n in columns for n in plan.names):
        return None
    parts = [columns[n] for n in plan.names]
    if not all(p.dtype.kind in ("iu" if plan.integer else "iuf") for p in parts):
        return None
    return Rows(np.column_stack(parts).astype(plan.dtype, copy=False), signature)


def tensor_rows(array: np.ndarray, signature: Signature) -> Rows | None:
    """A V2 2-D numeric tensor as `Rows` (None if not lean)."""
    plan = plan_for(signature)
    if plan is None or array.ndim != 2 or array.shape[1] != plan.width:
        return None
    if array.dtype.kind not in ("iu" if plan.integer else "iuf"):
        return None
    return Rows(array.astype(plan.dtype, copy=False), signature)


# -- predicting ------------------------------------------------------------


class Predictor:
    """How one loaded version predicts a batch, chosen and verified when it is loaded.

    Modes, fastest first: ``onnx`` (an onnxruntime session made from the scikit-learn
    model), ``array`` (the native model on a numpy array), ``frame`` (the native model
    on a DataFrame, as registered). A mode is used only if it reproduces the native
    model's predictions (and probabilities) on the stored input example.

    Args:
        model: the loaded version.
        onnx: whether to try an ONNX session.

    Attributes:
        mode: ``onnx``, ``array`` or ``frame``.
        inline: whether a batch is cheap enough to predict on the event loop.
        seconds: the time one prediction on the example took (the best of a few).
    """

    def __init__(self, model: LoadedModel, *, onnx: bool = True) -> None:
        self.model = model
        self.raw = model.model
        self.signature = model.signature
        self.plan = plan_for(model.signature)
        self.names = [c.name for c in model.signature.columns]
        self.has_proba = model.has_predict_proba
        self._session: Any = None
        self.mode = "frame"
        self._choose(onnx)
        self.seconds = self._time()
        self.inline = self.seconds <= INLINE_SECONDS

    def __repr__(self) -> str:
        return f"Predictor({self.model.version.ref}, mode={self.mode}, inline={self.inline})"

    # -- choosing ----------------------------------------------------------
    def _choose(self, onnx: bool) -> None:
        if self.plan is None:
            return
        example = self._example()
        if example is None:
            return
        try:
            native = self._run_frame(self._as_frame(example), self.has_proba)
        except Exception:  # the checked path will report it per request
            log.debug("serving: native prediction on the example failed", exc_info=True)
            return
        if onnx and self._try_onnx(example, native):
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                same = _same(native, self._run_array(example, self.has_proba))
            except Exception:
                same = False
        if same:
            self.mode = "array"
            if self.names and hasattr(self.raw, "feature_names_in_"):
                # Fitted on a frame and verified on arrays: its "no feature names" warning
                # would otherwise be raised (and filtered) on every request.
                warnings.filterwarnings(
                    "ignore", message="X does not have valid feature names", category=UserWarning
                )

    def _example(self) -> np.ndarray | None:
        assert self.plan is not None
        example = self.model.input_example
        if isinstance(example, pd.DataFrame):
            if not all(n in example.columns for n in self.names):
                return None
            example = example[self.names].to_numpy()
        array = np.asarray(example)
        if array.ndim != 2 or array.shape[1] != self.plan.width or not len(array):
            return None
        try:
            return array.astype(self.plan.dtype)
        except (TypeError, ValueError):
            return None

    def _try_onnx(self, example: np.ndarray, native: tuple[Any, Any]) -> bool:
        try:
            session = _onnx_session(self.raw, example.shape[1])
        except Exception:
            log.debug("serving: no ONNX session for %s", self.model.version.ref, exc_info=True)
            return False
        if session is None:
            return False
        self._session = session
        try:
            same = _same(native, self._run_onnx(example, self.has_proba))
        except Exception:
            same = False
        if not same:
            log.info("serving %s: the ONNX export differs from the model; native", self.model)
            self._session = None
            return False
        self.mode = "onnx"
        return True

    def _time(self) -> float:
        example = self._example() if self.plan is not None else None
        data: Any = example if example is not None else self.model.input_example
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            try:
                self.predict([data], self.has_proba)
            except Exception:
                return float("inf")
            best = min(best, time.perf_counter() - started)
        return best

    # -- predicting --------------------------------------------------------
    def predict(self, parts: Sequence[Any], proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions (and probabilities if asked and given) for ``parts`` stacked in order.

        Each part is checked input: an array in the signature's layout, or a DataFrame
        in its columns.
        """
        _, pred, probs = self.predict_batch(parts, proba)
        return pred, probs

    def predict_batch(
        self, parts: Sequence[Any], proba: bool
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """As `predict`, with the rows it predicted on: the parts stacked as they came.

        The rows are None unless every part was an array the model took as it was
        (no frame, no conversion): they are then exactly the parts, in order, and
        the capture log can take a whole batch's rows at once.
        """
        want = proba and self.has_proba
        if self.mode == "frame":
            frames = [self._as_frame(p) for p in parts]
            frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            return (None, *self._run_frame(frame, want))
        arrays = [self._as_array(p) for p in parts]
        array = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        rows = array if all(map(is_, arrays, parts)) else None
        if self.mode == "onnx":
            return (rows, *self._run_onnx(array, want))
        return (rows, *self._run_array(array, want))

    def _as_frame(self, part: Any) -> Any:
        if isinstance(part, np.ndarray) and self.names:
            return pd.DataFrame(part, columns=self.names)
        return part

    def _as_array(self, part: Any) -> np.ndarray:
        assert self.plan is not None
        if isinstance(part, pd.DataFrame):
            array: np.ndarray = part.to_numpy(dtype=self.plan.dtype)
            return array
        return np.asarray(part, dtype=self.plan.dtype)

    def _run_frame(self, frame: Any, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return _native(self.raw, frame, proba)

    def _run_array(self, array: np.ndarray, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return _native(self.raw, array, proba)

    def _run_onnx(self, array: np.ndarray, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self._session.run(None, {"X": array.astype(np.float32, copy=False)})
        if len(outputs) == 2:  # a classifier: label, probabilities
            return np.asarray(outputs[0]), (np.asarray(outputs[1]) if proba else None)
        return np.asarray(outputs[0]).reshape(len(array)), None


def _native(raw: Any, data: Any, proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if not proba:
        return np.asarray(raw.predict(data)), None
    probs = np.asarray(raw.predict_proba(data))
    classes = getattr(raw, "classes_", None)
    if classes is not None and len(classes) == probs.shape[1]:
        # One call: the predicted class is the most probable one, as predict() would say.
        return np.asarray(classes)[np.argmax(probs, axis=1)], probs
    return np.asarray(raw.predict(data)), probs


def _same(expected: tuple[Any, Any], actual: tuple[Any, Any]) -> bool:
    from conveyor.registry.signature import outputs_match

    (pred, proba), (pred2, proba2) = expected, actual
    if pred.shape != pred2.shape or pred.dtype.kind != pred2.dtype.kind:
        return False
    if not outputs_match(pred, pred2):
        return False
    if proba is None or proba2 is None:
        return proba is None and proba2 is None
    return outputs_match(proba, proba2)


def _onnx_session(raw: Any, width: int) -> Any:
    """An onnxruntime session for a scikit-learn tree model (input ``X``, float32), or None."""
    kind = type(raw)
    if not kind.__module__.startswith("sklearn.") or kind.__name__ not in _FLOAT32_TREES:
        return None
    try:
        import onnxruntime as ort
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError:
        return None
    options = {id(raw): {"zipmap": False}} if hasattr(raw, "predict_proba") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onx = to_onnx(raw, initial_types=[("X", FloatTensorType([None, width]))], options=options)
    settings = ort.SessionOptions()
    # One thread, no spinning: batches are small and the cores are shared with the server.
    settings.intra_op_num_threads = 1
    settings.inter_op_num_threads = 1
    settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        onx.SerializeToString(), settings, providers=["CPUExecutionProvider"]
    )
