"""How lifecycle results are stored as pipeline step outputs, without pickle.

Lifecycle sits below runtime in the layers contract, so this module only defines the
dump and load functions; `SERIALIZERS` lists them for a layer above to register with
runtime's serializer registry (each entry has the fields of ``runtime.Serializer``
after its target). Models are stored in the registry's safe formats (skops for
scikit-learn, LightGBM's text, XGBoost's UBJ), in a zip with a small JSON header; a
LightGBM model comes back as a booster-backed predictor with ``predict`` and
``predict_proba``, not as an ``LGBMClassifier``. Zips are written with fixed dates, so
equal values give equal bytes wherever the format's own bytes are stable (LightGBM,
XGBoost; skops names its members after object ids).
"""

from __future__ import annotations

import importlib
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from conveyor.errors import StateError

__all__ = [
    "SERIALIZERS",
    "SerializerSpec",
    "dump_model",
    "is_safe_model",
    "load_model",
]

_EPOCH = (1980, 1, 1, 0, 0, 0)
_SAFE_ROOTS = frozenset({"sklearn", "lightgbm", "xgboost"})


class SerializerSpec(NamedTuple):
    """A serializer for runtime's registry: its target (``module:Class``) and its fields.

    ``accepts`` narrows the target to the values the serializer can hold (None: all).
    """

    target: str
    name: str
    suffix: str
    media_type: str
    dump: Callable[[Any], bytes]
    load: Callable[[bytes], Any]
    accepts: Callable[[Any], bool] | None = None


# -- zips ------------------------------------------------------------------------


def _zip(entries: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def _unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# -- models ----------------------------------------------------------------------


def is_safe_model(model: Any) -> bool:
    """Whether ``model`` and every estimator inside it come from scikit-learn, LightGBM or XGBoost.

    Such models are stored in a safe format; anything else (a custom transformer in a
    pipeline) is left to other serializers, e.g. a step's ``allow_pickle``.
    """
    parts = [model]
    get_params = getattr(model, "get_params", None)
    if callable(get_params):
        parts += [v for v in get_params(deep=True).values() if hasattr(v, "get_params")]
    return all(type(p).__module__.split(".")[0] in _SAFE_ROOTS for p in parts)


def _model_entries(model: Any, prefix: str) -> dict[str, bytes]:
    from conveyor.registry.formats import save_model

    fmt, saved = save_model(model, trusted=False)
    header = {"format": fmt.name, "meta": saved.meta}
    files = {f"{prefix}{name}": data for name, data in saved.files.items()}
    return {f"{prefix}model.json": _json(header), **files}


def _model_from(entries: Mapping[str, bytes], prefix: str) -> Any:
    from conveyor.registry.formats import format_named

    header = json.loads(entries[f"{prefix}model.json"])
    fmt = format_named(str(header["format"]))
    if fmt.executes_code:
        raise StateError(f"refusing to load a {fmt.name} model from a step output")
    files = {
        name[len(prefix) :]: data
        for name, data in entries.items()
        if name.startswith(prefix) and name != f"{prefix}model.json"
    }
    return fmt.load(files, header["meta"])


def dump_model(model: Any) -> bytes:
    """A fitted model in its safe format, zipped (`UnsupportedModelError` if none holds it)."""
    return _zip(_model_entries(model, "model/"))


def load_model(data: bytes) -> Any:
    """The model `dump_model` stored."""
    return _model_from(_unzip(data), "model/")


# -- lifecycle results -----------------------------------------------------------


def _trained_entries(trained: Any, prefix: str) -> dict[str, bytes]:
    info = {
        "seed": trained.seed,
        "fit_seconds": trained.fit_seconds,
        "warnings": list(trained.warnings),
        "converged": trained.converged,
        "params": dict(trained.params),
    }
    return {
        f"{prefix}trained.json": _json(info),
        **_model_entries(trained.model, f"{prefix}model/"),
    }


def _trained_from(entries: Mapping[str, bytes], prefix: str) -> Any:
    from conveyor.lifecycle._train import Trained

    info = json.loads(entries[f"{prefix}trained.json"])
    model = _model_from(entries, f"{prefix}model/")
    return Trained(
        model,
        info["seed"],
        info["fit_seconds"],
        tuple(info["warnings"]),
        info["converged"],
        info["params"],
    )


def dump_trained(trained: Any) -> bytes:
    """A `Trained`: its model in a safe format and the rest as JSON, zipped."""
    return _zip(_trained_entries(trained, ""))


def load_trained(data: bytes) -> Any:
    """The `Trained` `dump_trained` stored."""
    return _trained_from(_unzip(data), "")


def dump_tuned(tuned: Any) -> bytes:
    """A `Tuned`: the refitted `Trained` and the search's results, zipped."""
    info = {
        "best_params": tuned.best_params,
        "best_score": tuned.best_score,
        "trials": [list(t) for t in tuned.trials],
        "metric": tuned.metric,
        "direction": tuned.direction,
        "warnings": list(tuned.warnings),
    }
    return _zip({"tuned.json": _json(info), **_trained_entries(tuned.trained, "trained/")})


def load_tuned(data: bytes) -> Any:
    """The `Tuned` `dump_tuned` stored."""
    from conveyor.lifecycle._tune import TrialRecord, Tuned

    entries = _unzip(data)
    info = json.loads(entries["tuned.json"])
    return Tuned(
        info["best_params"],
        info["best_score"],
        _trained_from(entries, "trained/"),
        [TrialRecord(*t) for t in info["trials"]],
        info["metric"],
        info["direction"],
        tuple(info["warnings"]),
    )


def dump_evaluation(evaluation: Any) -> bytes:
    """An `Evaluation`: its numbers as JSON and its plots as PNG files, zipped."""
    plots = {f"plots/{name}.png": png for name, png in evaluation.plots.items()}
    return _zip({"evaluation.json": _json(evaluation.to_dict()), **plots})


def load_evaluation(data: bytes) -> Any:
    """The `Evaluation` `dump_evaluation` stored."""
    from conveyor.lifecycle._evaluate import Evaluation

    entries = _unzip(data)
    plots = {
        name[len("plots/") : -len(".png")]: png
        for name, png in entries.items()
        if name.startswith("plots/")
    }
    return Evaluation.from_dict(json.loads(entries["evaluation.json"]), plots)


def dump_decision(decision: Any) -> bytes:
    """A `GateDecision` as JSON."""
    return _json(
        {"passed": decision.passed, "reasons": decision.reasons, "evidence": decision.evidence}
    )


def load_decision(data: bytes) -> Any:
    """The `GateDecision` `dump_decision` stored."""
    from conveyor.lifecycle._validate import GateDecision

    info = json.loads(data)
    return GateDecision(info["passed"], info["reasons"], info["evidence"])


def dump_model_version(version: Any) -> bytes:
    """A registry `ModelVersion` record as JSON (what `register_version` returns)."""
    return _json(
        {
            "name": version.name,
            "version": version.version,
            "format": version.format,
            "created_at": version.created_at,
            "manifest_sha256": version.manifest_sha256,
            "signature": version.signature.to_dict(),
            "environment": version.environment.to_dict(),
            "trusted": version.trusted,
            "run_id": version.run_id,
            "description": version.description,
            "tags": dict(version.tags),
            "metrics": dict(version.metrics),
            "source": {"git_sha": version.source.git_sha, "diff_hash": version.source.diff_hash},
            "data_digests": dict(version.data_digests),
            "files": dict(version.files),
            "profile_sha256": version.profile_sha256,
        }
    )


def load_model_version(data: bytes) -> Any:
    """The `ModelVersion` `dump_model_version` stored."""
    from conveyor.core.entities import SourceVersion
    from conveyor.core.registry import Environment, ModelVersion, Signature

    info = json.loads(data)
    info["signature"] = Signature.from_dict(info["signature"])
    info["environment"] = Environment.from_dict(info["environment"])
    info["source"] = SourceVersion(**info["source"])
    return ModelVersion(**info)


_ZIP = "application/zip"
_JSON = "application/json"
_MODEL = ("conveyor.model", ".zip", _ZIP, dump_model, load_model)


def _to_bytes(value: Any) -> bytes:
    data: bytes = value.to_bytes()
    return data


def _from_bytes(target: str) -> Callable[[bytes], Any]:
    """A loader calling ``Class.from_bytes`` of ``"module:Class"``, imported when first used."""

    def load(data: bytes) -> Any:
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name).from_bytes(data)

    return load


def _self_describing(target: str, name: str, suffix: str, media_type: str) -> SerializerSpec:
    """For results that write themselves (``to_bytes``) and read themselves (``from_bytes``)."""
    return SerializerSpec(target, name, suffix, media_type, _to_bytes, _from_bytes(target))


SERIALIZERS: tuple[SerializerSpec, ...] = (
    _self_describing(
        "conveyor.lifecycle._extract:Dataset",
        "conveyor.dataset",
        ".parquet",
        "application/vnd.apache.parquet",
    ),
    _self_describing(
        "conveyor.lifecycle.schema:Schema", "conveyor.schema", ".yaml", "application/yaml"
    ),
    _self_describing(
        "conveyor.lifecycle.schema:AnomalyReport", "conveyor.anomalies", ".json", _JSON
    ),
    _self_describing("conveyor.lifecycle._prepare:Prepared", "conveyor.prepared", ".zip", _ZIP),
    _self_describing("conveyor.profiling.profile:Profile", "conveyor.profile", ".json", _JSON),
    SerializerSpec(
        "conveyor.lifecycle._train:Trained",
        "conveyor.trained",
        ".zip",
        _ZIP,
        dump_trained,
        load_trained,
    ),
    SerializerSpec(
        "conveyor.lifecycle._tune:Tuned", "conveyor.tuned", ".zip", _ZIP, dump_tuned, load_tuned
    ),
    SerializerSpec(
        "conveyor.lifecycle._evaluate:Evaluation",
        "conveyor.evaluation",
        ".zip",
        _ZIP,
        dump_evaluation,
        load_evaluation,
    ),
    SerializerSpec(
        "conveyor.lifecycle._validate:GateDecision",
        "conveyor.gate_decision",
        ".json",
        _JSON,
        dump_decision,
        load_decision,
    ),
    SerializerSpec(
        "conveyor.core.registry:ModelVersion",
        "conveyor.model_version",
        ".json",
        _JSON,
        dump_model_version,
        load_model_version,
    ),
    SerializerSpec("sklearn.base:BaseEstimator", *_MODEL, accepts=is_safe_model),
    SerializerSpec("lightgbm.basic:Booster", *_MODEL),
    SerializerSpec("xgboost.core:Booster", *_MODEL),
)
