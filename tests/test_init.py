import subprocess
import sys

import conveyor


def test_public_api_is_pinned():
    assert conveyor.__all__ == [
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


def test_every_name_resolves():
    for name in conveyor.__all__:
        assert getattr(conveyor, name) is not None


def test_import_is_lazy():
    code = (
        "import sys, conveyor\n"
        "print(sorted(m for m in ('sqlalchemy', 'pandas', 'fsspec') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        conveyor.nope  # noqa: B018
