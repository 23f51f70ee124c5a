"""The offline stages of a model's life, one module each, in order; every stage is a ``@step``.

Example::

    from conveyor import lifecycle as lc

    ds = lc.extract("data/*.parquet", state="data/.watermark.json")  # only new files
    profile, schema = lc.analyze(ds)
    schema.save("schema.yaml")  # edit it, then Schema.load("schema.yaml")
    report = lc.check(ds, schema)  # report.ok, report.anomalies
    prepared = lc.prepare(ds, schema, target="late", split="time", time_column="time_hour")
    trained = lc.train(lc.make_model_pipeline(prepared.transform, estimator),
                       prepared.X_train, prepared.y_train)
    evaluation = lc.evaluate(trained.model, prepared.X_test, prepared.y_test)
    decision = lc.validate(trained.model, prepared.test, "late", champion="flights@production",
                           registry=registry)
    lc.register_version(registry, "flights", trained, prepared.X_test.head(),
                        evaluation=evaluation, decision=decision, alias="production")

Outside a ``@pipeline`` each stage is a plain function. Every name is loaded on
first use, so importing this package costs nothing; the stages live in private
modules (``_extract``, ``_train``…), as scikit-learn keeps its own. How their
results are stored as step outputs is in `conveyor.lifecycle.serialization`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, tuple[str, str]] = {
    "extract": ("conveyor.lifecycle._extract", "extract"),
    "Dataset": ("conveyor.lifecycle._extract", "Dataset"),
    "Watermark": ("conveyor.lifecycle._extract", "Watermark"),
    "fingerprint": ("conveyor.lifecycle._extract", "fingerprint"),
    "analyze": ("conveyor.lifecycle._analyze", "analyze"),
    "infer_schema": ("conveyor.lifecycle._analyze", "infer_schema"),
    "check": ("conveyor.lifecycle._check", "check"),
    "Schema": ("conveyor.lifecycle.schema", "Schema"),
    "ColumnSchema": ("conveyor.lifecycle.schema", "ColumnSchema"),
    "Anomaly": ("conveyor.lifecycle.schema", "Anomaly"),
    "AnomalyReport": ("conveyor.lifecycle.schema", "AnomalyReport"),
    "prepare": ("conveyor.lifecycle._prepare", "prepare"),
    "Prepared": ("conveyor.lifecycle._prepare", "Prepared"),
    "split_frame": ("conveyor.lifecycle._prepare", "split_frame"),
    "make_feature_transform": ("conveyor.lifecycle.transform", "make_feature_transform"),
    "make_model_pipeline": ("conveyor.lifecycle.transform", "make_model_pipeline"),
    # The transform `prepare` fits is scikit-learn's own class (skops saves it as is).
    "FeatureTransform": ("sklearn.compose", "ColumnTransformer"),
    "load_flights": ("conveyor.lifecycle.datasets", "load_flights"),
    "flights_months": ("conveyor.lifecycle.datasets", "flights_months"),
    "train": ("conveyor.lifecycle._train", "train"),
    "Trained": ("conveyor.lifecycle._train", "Trained"),
    "tune": ("conveyor.lifecycle._tune", "tune"),
    "Tuned": ("conveyor.lifecycle._tune", "Tuned"),
    "evaluate": ("conveyor.lifecycle._evaluate", "evaluate"),
    "Evaluation": ("conveyor.lifecycle._evaluate", "Evaluation"),
    "validate": ("conveyor.lifecycle._validate", "validate"),
    "GateDecision": ("conveyor.lifecycle._validate", "GateDecision"),
    "register_version": ("conveyor.lifecycle._register", "register_version"),
    "transformed_features": ("conveyor.lifecycle.transform", "transformed_features"),
    "Profile": ("conveyor.profiling", "Profile"),
}

__all__ = [
    "Anomaly",
    "AnomalyReport",
    "ColumnSchema",
    "Dataset",
    "Evaluation",
    "FeatureTransform",
    "GateDecision",
    "Prepared",
    "Profile",
    "Schema",
    "Trained",
    "Tuned",
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
    "transformed_features",
    "tune",
    "validate",
]

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer as FeatureTransform

    from conveyor.lifecycle._analyze import analyze, infer_schema
    from conveyor.lifecycle._check import check
    from conveyor.lifecycle._evaluate import Evaluation, evaluate
    from conveyor.lifecycle._extract import Dataset, Watermark, extract, fingerprint
    from conveyor.lifecycle._prepare import Prepared, prepare, split_frame
    from conveyor.lifecycle._register import register_version
    from conveyor.lifecycle._train import Trained, train
    from conveyor.lifecycle._tune import Tuned, tune
    from conveyor.lifecycle._validate import GateDecision, validate
    from conveyor.lifecycle.datasets import flights_months, load_flights
    from conveyor.lifecycle.schema import Anomaly, AnomalyReport, ColumnSchema, Schema
    from conveyor.lifecycle.transform import (
        make_feature_transform,
        make_model_pipeline,
        transformed_features,
    )
    from conveyor.profiling import Profile


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = target
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
