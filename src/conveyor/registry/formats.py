"""Model formats: how a model object becomes files that load without running its code.

The safe formats, tried in order, are LightGBM text, XGBoost UBJ, ONNX, and
scikit-learn through skops with an explicit list of trusted types (computed from
the saved bytes, and refused if any lies outside scikit-learn, numpy, scipy and
harmless builtins). Pickle executes code on load; it is used only when the
caller passes ``trusted=True``, which the version records. Each library is
imported inside its handler, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pickle
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from conveyor.errors import StateError, UnsupportedModelError

__all__ = [
    "FORMATS",
    "ModelFormat",
    "SavedModel",
    "format_named",
    "save_model",
    "unsafe_types",
]


@dataclass(frozen=True, slots=True)
class SavedModel:
    """A model as files, what the format needs to load it again, and the packages it needs."""

    files: dict[str, bytes]
    meta: dict[str, Any] = field(default_factory=dict)
    packages: tuple[str, ...] = ()


def _class_names(model: object) -> set[str]:
    return {f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__}


class ModelFormat(ABC):
    """One way to store a model; ``executes_code`` formats need a recorded trust flag."""

    name: ClassVar[str]
    holds: ClassVar[str]  # what it holds, in words, for error messages
    executes_code: ClassVar[bool] = False

    @abstractmethod
    def accepts(self, model: object) -> bool:
        """Whether this format is the one for ``model`` (checked without importing libraries)."""

    @abstractmethod
    def save(self, model: Any) -> SavedModel:
        """The model as files; `UnsupportedModelError` if this format cannot hold it."""

    @abstractmethod
    def load(self, files: Mapping[str, bytes], meta: Mapping[str, Any]) -> Any:
        """An object with ``predict`` (and ``predict_proba`` where the model has it)."""

    def live(self, model: Any, saved: SavedModel) -> Any:
        """The in-memory model as a predictor (what the saved files must reproduce)."""
        return model


# -- scikit-learn through skops --------------------------------------------

_SAFE_ROOTS = frozenset({"sklearn", "numpy", "scipy", "builtins"})
# Builtins that could run or reach arbitrary code if a package named them as a function.
_UNSAFE_BUILTINS = frozenset(
    f"builtins.{name}"
    for name in (
        *("eval", "exec", "compile", "__import__", "open", "input", "breakpoint"),
        *("getattr", "setattr", "delattr", "globals", "locals", "vars"),
        *("exit", "quit", "help", "memoryview"),
    )
)


def unsafe_types(types: list[str]) -> list[str]:
    """The types a skops file names that lie outside scikit-learn, numpy, scipy and builtins."""
    return [t for t in types if t.split(".")[0] not in _SAFE_ROOTS or t in _UNSAFE_BUILTINS]


class SkopsFormat(ModelFormat):
    """scikit-learn estimators and pipelines, as skops files that load without pickle."""

    name = "skops"
    holds = "scikit-learn estimators and pipelines made of scikit-learn, numpy and scipy types"

    def accepts(self, model: object) -> bool:
        """Any scikit-learn estimator (a pipeline included)."""
        return "sklearn.base.BaseEstimator" in _class_names(model)

    def save(self, model: Any) -> SavedModel:
        """The estimator as skops bytes and the list of types it needs trusted."""
        import skops.io as sio

        try:
            data = sio.dumps(model)
        except Exception as exc:
            raise UnsupportedModelError(f"skops cannot serialize it: {exc}") from exc
        needed = sorted(sio.get_untrusted_types(data=data))
        bad = unsafe_types(needed)
        if bad:
            raise UnsupportedModelError(
                "it holds types from outside scikit-learn, numpy and scipy: " + ", ".join(bad)
            )
        packages = ("skops", "scikit-learn", "numpy", "scipy")
        return SavedModel({"model.skops": data}, {"trusted_types": needed}, packages)

    def load(self, files: Mapping[str, bytes], meta: Mapping[str, Any]) -> Any:
        """The estimator, trusting only the types recorded at registration."""
        import skops.io as sio

        data = files["model.skops"]
        needed = sio.get_untrusted_types(data=data)
        recorded = set(meta.get("trusted_types", ()))
        extra = sorted({t for t in needed if t not in recorded} | set(unsafe_types(needed)))
        if extra:
            raise StateError(
                "refusing to load a skops file naming types not vetted at registration: "
                + ", ".join(extra)
            )
        return sio.loads(data, trusted=needed)


# -- LightGBM text ---------------------------------------------------------


class _LightGBMModel:
    """A LightGBM booster that predicts like the scikit-learn wrapper it came from."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, data: Any) -> Any:
        """The booster's predictions."""
        return self.booster.predict(data)


class _LightGBMClassifier(_LightGBMModel):
    def __init__(self, booster: Any, classes: list[Any]) -> None:
        super().__init__(booster)
        self.classes_ = np.asarray(classes)

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities, one column per class (as ``LGBMClassifier``)."""
        raw = np.asarray(self.booster.predict(data))
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw

    def predict(self, data: Any) -> Any:
        """The most probable class label."""
        return self.classes_[np.argmax(self.predict_proba(data), axis=1)]


class LightGBMFormat(ModelFormat):
    """LightGBM boosters and LGBMClassifier/LGBMRegressor, as LightGBM's own model text."""

    name = "lightgbm"
    holds = "LightGBM Booster, LGBMClassifier and LGBMRegressor"

    def accepts(self, model: object) -> bool:
        """A LightGBM booster or scikit-learn wrapper."""
        names = _class_names(model)
        return "lightgbm.basic.Booster" in names or "lightgbm.sklearn.LGBMModel" in names

    def save(self, model: Any) -> SavedModel:
        """The model text, and the classes of a classifier."""
        names = _class_names(model)
        booster = model if "lightgbm.basic.Booster" in names else model.booster_
        meta: dict[str, Any] = {"kind": "booster"}
        if "lightgbm.sklearn.LGBMClassifier" in names:
            meta = {"kind": "classifier", "classes": np.asarray(model.classes_).tolist()}
        text = booster.model_to_string().encode()
        return SavedModel({"model.txt": text}, meta, ("lightgbm", "numpy"))

    def load(self, files: Mapping[str, bytes], meta: Mapping[str, Any]) -> Any:
        """A booster behind ``predict`` (and ``predict_proba`` for a classifier)."""
        import lightgbm

        booster = lightgbm.Booster(model_str=files["model.txt"].decode())
        if meta.get("kind") == "classifier":
            return _LightGBMClassifier(booster, list(meta["classes"]))
        return _LightGBMModel(booster)


# -- XGBoost UBJ -----------------------------------------------------------

_XGB_WRAPPERS = frozenset(
    {"XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor", "XGBRanker"}
)


class _XGBoostBooster:
    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, data: Any) -> Any:
        """The booster's predictions on ``data``."""
        import xgboost

        return self.booster.predict(xgboost.DMatrix(data))


class XGBoostFormat(ModelFormat):
    """XGBoost boosters and scikit-learn wrappers, as UBJ (binary JSON)."""

    name = "xgboost"
    holds = "XGBoost Booster, XGBClassifier and XGBRegressor"

    def accepts(self, model: object) -> bool:
        """An XGBoost booster or scikit-learn wrapper."""
        names = _class_names(model)
        return "xgboost.core.Booster" in names or "xgboost.sklearn.XGBModel" in names

    def save(self, model: Any) -> SavedModel:
        """UBJ bytes; a wrapper's own save keeps its classes and objective in them."""
        if "xgboost.core.Booster" in _class_names(model):
            data = bytes(model.save_raw(raw_format="ubj"))
            return SavedModel({"model.ubj": data}, {"kind": "booster"}, ("xgboost", "numpy"))
        cls = type(model).__name__
        if cls not in _XGB_WRAPPERS:
            raise UnsupportedModelError(
                f"XGBoost wrapper {cls} is not one of {sorted(_XGB_WRAPPERS)}"
            )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.ubj"
            model.save_model(str(path))
            data = path.read_bytes()
        packages = ("xgboost", "numpy", "scikit-learn")
        return SavedModel({"model.ubj": data}, {"kind": "sklearn", "class": cls}, packages)

    def load(self, files: Mapping[str, bytes], meta: Mapping[str, Any]) -> Any:
        """The booster, or the scikit-learn wrapper rebuilt from the UBJ bytes."""
        import xgboost

        data = bytearray(files["model.ubj"])
        if meta.get("kind") == "booster":
            booster = xgboost.Booster()
            booster.load_model(data)
            return _XGBoostBooster(booster)
        cls = str(meta.get("class"))
        if cls not in _XGB_WRAPPERS:
            raise StateError(f"unknown XGBoost wrapper {cls!r} in the package")
        model = getattr(xgboost, cls)()
        model.load_model(data)
        return model


# -- ONNX ------------------------------------------------------------------

_ONNX_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


class _OnnxModel:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.inputs = session.get_inputs()

    def _run(self, data: Any) -> list[Any]:
        import pandas as pd

        if isinstance(data, pd.DataFrame) and len(self.inputs) > 1:
            feeds = {
                i.name: _onnx_cast(data[i.name].to_numpy().reshape(-1, 1), i.type)
                for i in self.inputs
            }
        else:
            array = data.to_numpy() if isinstance(data, pd.DataFrame) else np.asarray(data)
            feeds = {self.inputs[0].name: _onnx_cast(array, self.inputs[0].type)}
        return list(self.session.run(None, feeds))

    def predict(self, data: Any) -> Any:
        """The model's first output."""
        return self._run(data)[0]


class _OnnxClassifier(_OnnxModel):
    def predict_proba(self, data: Any) -> np.ndarray:
        """The model's second output (probabilities), as an array even if it was a ZipMap."""
        proba = self._run(data)[1]
        if isinstance(proba, list) and proba and isinstance(proba[0], dict):
            keys = list(proba[0])
            return np.asarray([[row[k] for k in keys] for row in proba])
        return np.asarray(proba)


def _onnx_cast(array: np.ndarray, onnx_type: str) -> np.ndarray:
    dtype = _ONNX_TYPES.get(onnx_type)
    return array if dtype is None else array.astype(dtype, copy=False)


class OnnxFormat(ModelFormat):
    """ONNX models (e.g. converted with skl2onnx), run by onnxruntime."""

    name = "onnx"
    holds = "onnx.ModelProto (any model converted to ONNX)"

    def accepts(self, model: object) -> bool:
        """An ONNX ``ModelProto``."""
        return type(model).__module__.startswith("onnx") and type(model).__name__ == "ModelProto"

    def save(self, model: Any) -> SavedModel:
        """The serialized protobuf."""
        packages = ("onnx", "onnxruntime", "numpy")
        return SavedModel({"model.onnx": model.SerializeToString()}, {}, packages)

    def load(self, files: Mapping[str, bytes], meta: Mapping[str, Any]) -> Any:
        """An onnxruntime session on the CPU behind ``predict`` (and ``predict_proba``)."""
        import onnxruntime

        session = onnxruntime.InferenceSession(
            files["model.onnx"], providers=["CPUExecutionProvider"]
        )
        cls = _OnnxClassifier if len(session.get_outputs()) > 1 else _OnnxModel
        return cls(session)

    def live(self, model: Any, saved: SavedModel) -> Any:
        """An ONNX graph only predicts through a runtime."""
        return self.load(saved.files, saved.meta)


# -- pickle, only when trusted ---------------------------------------------


class PickleFormat(ModelFormat):
    """Any picklable object; loading it runs code, so it needs a recorded ``trusted=True``."""

    name = "pickle"
    holds = "any picklable object, with trusted=True"
    executes_code = True

    def accepts(self, model: object) -> bool:
        """Anything; chosen only when trusted and no safe format holds the model."""
        return True

    def save(self, model: Any) -> SavedModel:
        """Pickle bytes, and the distribution that defines the model's class."""
        try:
            data = pickle.dumps(model, protocol=5)
        except Exception as exc:
            raise UnsupportedModelError(f"pickle cannot serialize it: {exc}") from exc
        root = type(model).__module__.split(".")[0]
        dists = importlib.metadata.packages_distributions().get(root, [])
        return SavedModel({"model.pkl": data}, {}, ("numpy", *dists))

    def load(self, files: Mapping[str, bytes], meta: Mapping[str, Any]) -> Any:
        """The unpickled model; the caller has checked the recorded trust flag."""
        # The version records trusted=True, given explicitly at registration (ADR 7).
        return pickle.loads(files["model.pkl"])  # noqa: S301


# -- a scikit-learn pipeline ending in a LightGBM or XGBoost model ----------

_NATIVE_FINALS = ("lightgbm", "xgboost")


class _ComposedModel:
    """The pipeline's transform steps (skops) feeding its final model (native format)."""

    def __init__(self, transform: Any, final: Any) -> None:
        self.transform = transform
        self.final = final
        if hasattr(final, "classes_"):
            self.classes_ = final.classes_

    def predict(self, data: Any) -> Any:
        """The final model's prediction on the transformed rows."""
        return self.final.predict(self.transform.transform(data))

    def __getattr__(self, name: str) -> Any:
        # predict_proba only where the final model has it.
        if name == "predict_proba" and hasattr(self.final, "predict_proba"):
            return lambda data: self.final.predict_proba(self.transform.transform(data))
        raise AttributeError(name)


class PipelineFormat(ModelFormat):
    """A scikit-learn ``Pipeline`` of transforms ending in a LightGBM or XGBoost model.

    The transforms are stored as skops, the model in its own format: nothing pickles.
    """

    name = "pipeline"
    holds = "scikit-learn pipelines whose last step is a LightGBM or XGBoost model"

    def accepts(self, model: object) -> bool:
        """A ``Pipeline`` whose last step a native format holds."""
        if "sklearn.pipeline.Pipeline" not in _class_names(model):
            return False
        final = model.steps[-1][1]  # type: ignore[attr-defined]
        return any(_BY_NAME[n].accepts(final) for n in _NATIVE_FINALS)

    def save(self, model: Any) -> SavedModel:
        """``transform.skops`` plus the final model's files under ``final/``."""
        from sklearn.pipeline import Pipeline

        step, final = model.steps[-1]
        fmt = next(_BY_NAME[n] for n in _NATIVE_FINALS if _BY_NAME[n].accepts(final))
        transform = _BY_NAME["skops"].save(Pipeline(model.steps[:-1]))
        inner = fmt.save(final)
        files = {"transform.skops": transform.files["model.skops"]}
        files.update({f"final/{k}": v for k, v in inner.files.items()})
        meta = {
            "transform": transform.meta,
            "final": {"format": fmt.name, "step": step, "meta": inner.meta},
        }
        return SavedModel(files, meta, (*transform.packages, *inner.packages))

    def load(self, files: Mapping[str, bytes], meta: Mapping[str, Any]) -> Any:
        """The transforms and the final model, composed."""
        transform = _BY_NAME["skops"].load(
            {"model.skops": files["transform.skops"]}, meta["transform"]
        )
        final_meta = meta["final"]
        inner = {k[len("final/") :]: v for k, v in files.items() if k.startswith("final/")}
        final = format_named(final_meta["format"]).load(inner, final_meta["meta"])
        return _ComposedModel(transform, final)


# -- choosing a format -----------------------------------------------------

FORMATS: tuple[ModelFormat, ...] = (
    PipelineFormat(),
    LightGBMFormat(),
    XGBoostFormat(),
    OnnxFormat(),
    SkopsFormat(),
    PickleFormat(),
)
_BY_NAME = {f.name: f for f in FORMATS}


def format_named(name: str) -> ModelFormat:
    """The format called ``name``; `StateError` for a package written by a newer conveyor."""
    found = _BY_NAME.get(name)
    if found is None:
        raise StateError(f"unknown model format {name!r}; this conveyor knows {sorted(_BY_NAME)}")
    return found


def save_model(model: Any, trusted: bool) -> tuple[ModelFormat, SavedModel]:
    """The format for ``model`` and the model saved in it.

    Raises:
        UnsupportedModelError: no safe format holds the model and ``trusted`` is false
            (the message lists the safe formats and what ``trusted=True`` means).
    """
    reason = "no safe format accepts this type"
    for fmt in FORMATS:
        if fmt.executes_code or not fmt.accepts(model):
            continue
        try:
            return fmt, fmt.save(model)
        except UnsupportedModelError as exc:
            reason = f"{fmt.name}: {exc.rule}"
            break
    if trusted:
        pickled = _BY_NAME["pickle"]
        return pickled, pickled.save(model)
    raise UnsupportedModelError(reason, _refusal(model, reason))


def _refusal(model: object, reason: str) -> str:
    safe = "; ".join(f"{f.name} ({f.holds})" for f in FORMATS if not f.executes_code)
    return (
        f"cannot register a {type(model).__module__}.{type(model).__qualname__} safely: "
        f"{reason}. The safe formats, which run no code when loaded, are: {safe}. "
        "To store it anyway, pass trusted=True: it is then pickled, and pickle runs code "
        "when the model is loaded, so do that only for models you produced yourself; "
        "the trust is recorded with the version and required to load it."
    )
