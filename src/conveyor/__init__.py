"""conveyor: MLOps level 2 in one package.

The public API is imported lazily, so ``import conveyor`` (and ``conveyor --help``)
stays fast; ``conveyor.start_run`` and friends load the stores on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # tracking (MLflow-compatible names)
    "start_run": "conveyor.fluent",
    "end_run": "conveyor.fluent",
    "active_run": "conveyor.fluent",
    "log_metric": "conveyor.fluent",
    "log_metrics": "conveyor.fluent",
    "log_param": "conveyor.fluent",
    "log_params": "conveyor.fluent",
    "set_tag": "conveyor.fluent",
    "set_tags": "conveyor.fluent",
    "log_artifact": "conveyor.fluent",
    "log_input": "conveyor.fluent",
    "flush": "conveyor.fluent",
    "get_run": "conveyor.fluent",
    "search_runs": "conveyor.fluent",
    "list_artifacts": "conveyor.fluent",
    "download_artifact": "conveyor.fluent",
    "configure": "conveyor.fluent",
    "get_tracker": "conveyor.fluent",
    # nouns
    "Run": "conveyor.core.entities",
    "RunStatus": "conveyor.core.entities",
    "Metric": "conveyor.core.entities",
    "ArtifactRecord": "conveyor.core.entities",
    "Experiment": "conveyor.core.entities",
    "ActiveRun": "conveyor.tracking.tracker",
    "Tracker": "conveyor.tracking.tracker",
    "Settings": "conveyor.settings",
    "load_settings": "conveyor.settings",
    # pipelines
    "step": "conveyor.core.step",
    "Step": "conveyor.core.step",
    "pipeline": "conveyor.core.pipeline",
    "Pipeline": "conveyor.core.pipeline",
    "run_pipeline": "conveyor.fluent",
    "PipelineResult": "conveyor.runtime.results",
    "StepResult": "conveyor.runtime.results",
    "LocalExecutor": "conveyor.runtime.executors.local",
    "Serializer": "conveyor.runtime.serializers",
    "register_serializer": "conveyor.runtime.serializers",
    # monitoring
    "profile": "conveyor.monitoring",
    "drift": "conveyor.monitoring",
    "Profile": "conveyor.monitoring",
    "DriftReport": "conveyor.monitoring",
    "ColumnDrift": "conveyor.monitoring",
    "Reference": "conveyor.monitoring",
    "domain_classifier": "conveyor.monitoring",
    "DomainReport": "conveyor.monitoring",
    # model registry
    "register_model": "conveyor.fluent",
    "load_model": "conveyor.fluent",
    "get_registry": "conveyor.fluent",
    "Registry": "conveyor.registry",
    "LoadedModel": "conveyor.registry",
    "ModelVersion": "conveyor.core.registry",
    "RegisteredModel": "conveyor.core.registry",
    "AliasEvent": "conveyor.core.registry",
    # errors
    "UnsupportedModelError": "conveyor.errors",
    "PipelineDefinitionError": "conveyor.errors",
    "DataValidationError": "conveyor.errors",
    "TrainingError": "conveyor.errors",
    "ConveyorError": "conveyor.errors",
    "ConfigError": "conveyor.errors",
    "ValidationError": "conveyor.errors",
    "FilterSyntaxError": "conveyor.errors",
    "UnsafePathError": "conveyor.errors",
    "NotFoundError": "conveyor.errors",
    "StateError": "conveyor.errors",
    "NoActiveRunError": "conveyor.errors",
    "StoreError": "conveyor.errors",
    "MigrationError": "conveyor.errors",
    "ArtifactCorruptedError": "conveyor.errors",
}

__all__ = [
    "ActiveRun",
    "AliasEvent",
    "ArtifactCorruptedError",
    "ArtifactRecord",
    "ColumnDrift",
    "ConfigError",
    "ConveyorError",
    "DataValidationError",
    "DomainReport",
    "DriftReport",
    "Experiment",
    "FilterSyntaxError",
    "LoadedModel",
    "LocalExecutor",
    "Metric",
    "MigrationError",
    "ModelVersion",
    "NoActiveRunError",
    "NotFoundError",
    "Pipeline",
    "PipelineDefinitionError",
    "PipelineResult",
    "Profile",
    "Reference",
    "RegisteredModel",
    "Registry",
    "Run",
    "RunStatus",
    "Serializer",
    "Settings",
    "StateError",
    "Step",
    "StepResult",
    "StoreError",
    "Tracker",
    "TrainingError",
    "UnsafePathError",
    "UnsupportedModelError",
    "ValidationError",
    "__version__",
    "active_run",
    "configure",
    "domain_classifier",
    "download_artifact",
    "drift",
    "end_run",
    "flush",
    "get_registry",
    "get_run",
    "get_tracker",
    "list_artifacts",
    "load_model",
    "load_settings",
    "log_artifact",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "pipeline",
    "profile",
    "register_model",
    "register_serializer",
    "run_pipeline",
    "search_runs",
    "set_tag",
    "set_tags",
    "start_run",
    "step",
]

if TYPE_CHECKING:
    from conveyor.core.entities import ArtifactRecord, Experiment, Metric, Run, RunStatus
    from conveyor.core.pipeline import Pipeline, pipeline
    from conveyor.core.registry import AliasEvent, ModelVersion, RegisteredModel
    from conveyor.core.step import Step, step
    from conveyor.errors import (
        ArtifactCorruptedError,
        ConfigError,
        ConveyorError,
        DataValidationError,
        FilterSyntaxError,
        MigrationError,
        NoActiveRunError,
        NotFoundError,
        PipelineDefinitionError,
        StateError,
        StoreError,
        TrainingError,
        UnsafePathError,
        UnsupportedModelError,
        ValidationError,
    )
    from conveyor.fluent import (
        active_run,
        configure,
        download_artifact,
        end_run,
        flush,
        get_registry,
        get_run,
        get_tracker,
        list_artifacts,
        load_model,
        log_artifact,
        log_input,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        register_model,
        run_pipeline,
        search_runs,
        set_tag,
        set_tags,
        start_run,
    )
    from conveyor.monitoring import (
        ColumnDrift,
        DomainReport,
        DriftReport,
        Profile,
        Reference,
        domain_classifier,
        drift,
        profile,
    )
    from conveyor.registry import LoadedModel, Registry
    from conveyor.runtime.executors.local import LocalExecutor
    from conveyor.runtime.results import PipelineResult, StepResult
    from conveyor.runtime.serializers import Serializer, register_serializer
    from conveyor.settings import Settings, load_settings
    from conveyor.tracking.tracker import ActiveRun, Tracker


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
