"""The offline stages of a model's life, one module each, in order; every stage is a ``@step``.

Example::

    from conveyor import lifecycle as lc

    ds = lc.extract("data/*.parquet", state="data/.watermark.json")  # only new files
    profile, schema = lc.analyze(ds)
    schema.save("schema.yaml")  # edit it, then Schema.load("schema.yaml")
    report = lc.check(ds, schema)  # report.ok, report.anomalies
    prepared = lc.prepare(ds, schema, target="late", split="time", time_column="time_hour")
    model = lc.make_model_pipeline(prepared.transform, estimator).fit(
        prepared.X_train, prepared.y_train
    )

Outside a ``@pipeline`` each stage is a plain function. Importing this package
registers serializers for its results (`Dataset` as Parquet with its metadata,
`Schema` as YAML, `AnomalyReport` as JSON, `Prepared` as a zip, the profiler's
``Profile`` as JSON), so they are storable step outputs. ``train``, ``tune``,
``evaluate``, ``validate`` and ``register_version`` are loaded on first use.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from conveyor.lifecycle import _layers
from conveyor.lifecycle.analyze import analyze, infer_schema
from conveyor.lifecycle.check import check
from conveyor.lifecycle.datasets import flights_months, load_flights
from conveyor.lifecycle.extract import Dataset, Watermark, extract, fingerprint
from conveyor.lifecycle.prepare import Prepared, prepare, split_frame
from conveyor.lifecycle.schema import Anomaly, AnomalyReport, ColumnSchema, Schema
from conveyor.lifecycle.transform import make_feature_transform, make_model_pipeline
from conveyor.profiling import Profile

__all__ = [
    "Anomaly",
    "AnomalyReport",
    "ColumnSchema",
    "Dataset",
    "FeatureTransform",
    "Prepared",
    "Schema",
    "Watermark",
    "analyze",
    "check",
    "evaluate",
    "extract",
    "fingerprint",
    "flights_months",
    "infer_schema",
    "load_flights",
    "make_feature_transform",
    "make_model_pipeline",
    "prepare",
    "register_version",
    "split_frame",
    "train",
    "tune",
    "validate",
]

# Loaded on first use: name -> (module, attribute).
_LAZY: dict[str, tuple[str, str]] = {
    "train": ("conveyor.lifecycle.train", "train"),
    "tune": ("conveyor.lifecycle.tune", "tune"),
    "evaluate": ("conveyor.lifecycle.evaluate", "evaluate"),
    "validate": ("conveyor.lifecycle.validate", "validate"),
    "register_version": ("conveyor.lifecycle.register", "register_version"),
    # The transform `prepare` fits is scikit-learn's own class (skops saves it as is).
    "FeatureTransform": ("sklearn.compose", "ColumnTransformer"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = target
    try:
        value = getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise  # the stage's module exists but needs something that is not installed
        raise AttributeError(f"{__name__}.{name} is not available: no module {module}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """This package, where a stage keeps its name when its module of the same name loads.

    Importing ``conveyor.lifecycle.train`` sets the package's attribute ``train`` to
    that module; the stage function of that name is kept there instead, so
    ``lc.train`` is the function whatever was imported first. (The module stays
    in ``sys.modules``: ``from conveyor.lifecycle.train import …`` still works.)
    """

    def __setattr__(self, name: str, value: Any) -> None:
        target = _LAZY.get(name)
        module, attribute = target or ("", "")
        if isinstance(value, types.ModuleType) and value.__name__ == module:
            value = getattr(value, attribute, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _register_serializers() -> None:
    parquet = "application/vnd.apache.parquet"
    _layers.register_serializer(
        Dataset, "conveyor.dataset", ".parquet", parquet, Dataset.to_bytes, Dataset.from_bytes
    )
    _layers.register_serializer(
        Schema, "conveyor.schema", ".yaml", "application/yaml", Schema.to_bytes, Schema.from_bytes
    )
    _layers.register_serializer(
        AnomalyReport,
        "conveyor.anomalies",
        ".json",
        "application/json",
        AnomalyReport.to_bytes,
        AnomalyReport.from_bytes,
    )
    _layers.register_serializer(
        Prepared,
        "conveyor.prepared",
        ".zip",
        "application/zip",
        Prepared.to_bytes,
        Prepared.from_bytes,
    )
    _layers.register_serializer(
        Profile,
        "conveyor.profile",
        ".json",
        "application/json",
        Profile.to_bytes,
        Profile.from_bytes,
    )


_register_serializers()
