"""`LoadedModel`: a version loaded from its verified package, predicting on checked input."""

from __future__ import annotations

from typing import Any

from conveyor.core.registry import ModelVersion, Signature
from conveyor.errors import StateError

__all__ = ["LoadedModel"]


class LoadedModel:
    """A model version ready to predict; input is checked against its signature first.

    Pandas input is validated (a missing column or a wrong dtype is a `ValidationError`
    naming the column and the rule), extra columns are dropped and the column order
    fixed; numpy input works where the signature came from numpy.

    Attributes:
        version: the version's record (name, number, metrics, lineage…).
        signature: what the model takes.
        input_example: the example stored at registration.
        expected_output: the model's prediction on it, stored at registration.
        model: the underlying model object (an estimator, a booster, a session).
    """

    def __init__(
        self,
        version: ModelVersion,
        model: Any,
        signature: Signature,
        input_example: Any,
        expected_output: Any,
    ) -> None:
        self.version = version
        self.model = model
        self.signature = signature
        self.input_example = input_example
        self.expected_output = expected_output

    def __repr__(self) -> str:
        return f"LoadedModel({self.version.ref}, format={self.version.format})"

    @property
    def has_predict_proba(self) -> bool:
        """Whether the model gives class probabilities."""
        return hasattr(self.model, "predict_proba")

    def predict(self, data: Any) -> Any:
        """The model's predictions on ``data`` (a DataFrame or an array)."""
        return self.model.predict(self._prepare(data))

    def predict_proba(self, data: Any) -> Any:
        """Class probabilities on ``data``; `StateError` if the model has none."""
        if not self.has_predict_proba:
            raise StateError(f"{self.version.ref} ({self.version.format}) has no predict_proba")
        return self.model.predict_proba(self._prepare(data))

    def check(self) -> None:
        """Predict on the stored input example and compare with the stored output.

        Serving calls this on a freshly loaded version before it takes traffic.

        Raises:
            StateError: the predictions differ (a broken environment or library).
        """
        from conveyor.registry.signature import outputs_match

        if not outputs_match(self.expected_output, self.predict(self.input_example)):
            raise StateError(
                f"{self.version.ref} does not reproduce its expected output on its input "
                "example here; compare this environment with the version's environment"
            )

    def _prepare(self, data: Any) -> Any:
        from conveyor.registry.signature import prepare_input

        return prepare_input(self.signature, data)
