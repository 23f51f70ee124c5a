"""Every error conveyor raises on purpose, in one tree.

Each class also derives from the builtin it resembles, so code written
against the builtins (``except KeyError``, ``except ValueError``) keeps working.

    ConveyorError
    ├── ConfigError (ValueError)              a setting or URI is malformed or unsupported
    ├── ValidationError (ValueError)          an argument breaks a rule (names field and rule)
    │   ├── FilterSyntaxError                 a search filter does not parse; points at the token
    │   ├── UnsafePathError                   an artifact path would leave its root
    │   ├── PipelineDefinitionError           a pipeline's DAG is invalid; names step and argument
    │   ├── UnsupportedModelError             no safe format holds a model, and it is not trusted
    │   ├── TrainingError                     NaN/inf in training data or loss; a fit that failed
    │   └── DataValidationError               data breaks its schema; names column, rule, examples
    ├── NotFoundError (KeyError)              a run, experiment or artifact does not exist
    ├── StateError (RuntimeError)             an operation is not allowed in the current state
    │   └── NoActiveRunError                  a logging call with no run started
    ├── StoreError (RuntimeError)             a backend failed in a way the caller cannot fix
    │   └── MigrationError                    the metadata schema could not be brought to head
    └── ArtifactCorruptedError (OSError)      stored bytes no longer match their sha256
"""

from __future__ import annotations

__all__ = [
    "ArtifactCorruptedError",
    "ConfigError",
    "ConveyorError",
    "DataValidationError",
    "FilterSyntaxError",
    "MigrationError",
    "NoActiveRunError",
    "NotFoundError",
    "PipelineDefinitionError",
    "StateError",
    "StoreError",
    "TrainingError",
    "UnsafePathError",
    "UnsupportedModelError",
    "ValidationError",
]


class ConveyorError(Exception):
    """The root of every error conveyor raises on purpose."""


class ConfigError(ConveyorError, ValueError):
    """A setting or URI is malformed or names something unsupported."""


class ValidationError(ConveyorError, ValueError):
    """An argument breaks a rule.

    Attributes:
        field: the name of the offending field or argument.
        rule: the rule it breaks, in words.
    """

    def __init__(self, field: str, rule: str, message: str | None = None) -> None:
        self.field = field
        self.rule = rule
        super().__init__(message or f"{field}: {rule}")


class FilterSyntaxError(ValidationError):
    """A search filter does not parse.

    Attributes:
        text: the whole filter.
        position: the 0-based offset of the offending token.
    """

    def __init__(self, text: str, position: int, rule: str) -> None:
        self.text = text
        self.position = position
        pointer = " " * position + "^"
        super().__init__(
            "filter", rule, f"invalid filter at position {position}: {rule}\n  {text}\n  {pointer}"
        )


class UnsafePathError(ValidationError):
    """An artifact path is absolute, climbs out of its root, or hides such a climb."""

    def __init__(self, path: str, rule: str) -> None:
        self.path = path
        super().__init__("path", rule, f"unsafe artifact path {path!r}: {rule}")


class NotFoundError(ConveyorError, KeyError):
    """A run, experiment, model or artifact does not exist."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a message reads better bare.
        return str(self.args[0]) if self.args else ""


class StateError(ConveyorError, RuntimeError):
    """An operation is not allowed in the current state (e.g. logging to a finished run)."""


class NoActiveRunError(StateError):
    """A logging call was made with no run started."""


class StoreError(ConveyorError, RuntimeError):
    """A storage backend failed in a way the caller cannot fix by changing arguments."""


class MigrationError(StoreError):
    """The metadata schema could not be brought to the current revision."""


class ArtifactCorruptedError(ConveyorError, OSError):
    """Stored bytes no longer match the sha256 they were stored under."""


class PipelineDefinitionError(ValidationError):
    """A pipeline's DAG is invalid (cycle, unknown parameter, wrong type, missing argument…).

    Attributes:
        step: the step (invocation name such as ``fit_2``) at fault, or None for the pipeline.
        argument: the offending argument or parameter, or None.
    """

    def __init__(self, step: str | None, argument: str | None, rule: str) -> None:
        self.step = step
        self.argument = argument
        parts = [f"step {step!r}"] if step else []
        parts += [f"argument {argument!r}"] if argument else []
        field = ", ".join(parts) or "pipeline"
        super().__init__(field, rule, f"{field}: {rule}")


class UnsupportedModelError(ValidationError):
    """A model object that no safe format can hold, registered without ``trusted=True``."""

    def __init__(self, rule: str, message: str | None = None) -> None:
        super().__init__("model", rule, message)


class TrainingError(ValidationError):
    """Training cannot give a usable model.

    NaN or infinity in the features, the target or the loss, predictions that are NaN,
    or (when asked to be strict) a fit that did not converge.
    """


class DataValidationError(ValidationError):
    """Data breaks its schema in a way the schema's policy says must stop the stage.

    Attributes:
        column: the first failing column.
        anomalies: every failing anomaly (``conveyor.lifecycle.Anomaly``), in report order.
    """

    def __init__(self, column: str, rule: str, message: str, anomalies: list[object]) -> None:
        self.column = column
        self.anomalies = list(anomalies)
        super().__init__(column, rule, message)
