"""Step outputs during a run: the Python object, its stored artifact, or both.

In the local executor an output is handed to the next step as the object
itself; it is written to the artifact store once, when produced. An output
reused from an earlier run is only a digest until a step that runs needs it
(then it is read and verified once). When a step returns an object it was
given, unchanged by its fingerprint, the stored artifact is reused.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ValidationError
from conveyor.runtime.fingerprint import fingerprint
from conveyor.runtime.serializers import get_serializer, serializer_for, unsupported_output
from conveyor.stores.artifacts.content import ContentAddressedStore

__all__ = ["StoredOutput", "Value", "materialize"]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """Where an output lives in the artifact store and which serializer wrote it."""

    sha256: str
    size: int
    serializer: str


class Value:
    """One output of one step: stored, and in memory once produced or loaded.

    Args:
        stored: the artifact.
        artifacts: where to read it from when the value is needed.
        value: the object, if it is in memory.
        fp: its fingerprint when stored (None if it has none).
        allow_pickle: whether the producing step opted in to pickles (needed to read one).
    """

    def __init__(
        self,
        stored: StoredOutput,
        artifacts: ContentAddressedStore,
        value: Any = _MISSING,
        fp: int | None = None,
        *,
        allow_pickle: bool = False,
    ) -> None:
        self.stored = stored
        self._artifacts = artifacts
        self._value = value
        self.fingerprint = fp
        self._allow_pickle = allow_pickle
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the object is in memory."""
        return self._value is not _MISSING

    def holds(self, obj: Any) -> bool:
        """Whether ``obj`` is this very object (identity, not equality)."""
        return self._value is obj

    def get(self) -> Any:
        """The object, read from the artifact store (verified) on first use."""
        if self._value is _MISSING:
            with self._lock:
                if self._value is _MISSING:
                    self._value = self._load()
        return self._value

    def _load(self) -> Any:
        if self.stored.serializer == "pickle" and not self._allow_pickle:
            raise ValidationError(
                f"artifact sha256:{self.stored.sha256}",
                "was stored as a pickle; its step must opt in with allow_pickle=True to read it",
            )
        serializer = get_serializer(self.stored.serializer)
        value = serializer.load(self._artifacts.get_bytes(self.stored.sha256))
        self.fingerprint = fingerprint(value)
        return value


def materialize(
    obj: Any,
    step: Any,
    node: str,
    output: str,
    inputs: list[Value],
    artifacts: ContentAddressedStore,
) -> Value:
    """Store one output of a step (or reuse the artifact of an unchanged input) as a `Value`.

    Args:
        obj: what the step returned for this output.
        step: the `Step` (its serializer overrides and pickle opt-in apply).
        node: the step invocation's name, for errors.
        output: the output's name, for errors.
        inputs: the values the step was given.
        artifacts: where the bytes go.

    Raises:
        ValidationError: no serializer handles the output's type, or it failed to write.
    """
    serializer = serializer_for(obj, step.serializers, allow_pickle=step.allow_pickle)
    if serializer is None:
        raise unsupported_output(node, output, type(obj))
    reused = _unchanged_input(obj, inputs, serializer.name)
    if reused is not None:
        return Value(
            reused.stored, artifacts, obj, reused.fingerprint, allow_pickle=step.allow_pickle
        )
    try:
        data = serializer.dump(obj)
    except Exception as exc:
        raise ValidationError(
            f"step {node!r} output {output!r}",
            f"could not be written with the {serializer.name} serializer: {exc}",
        ) from exc
    digest = artifacts.put_bytes(data)
    stored = StoredOutput(digest.sha256, digest.size, serializer.name)
    return Value(stored, artifacts, obj, fingerprint(obj), allow_pickle=step.allow_pickle)


def _unchanged_input(obj: Any, inputs: list[Value], serializer: str) -> Value | None:
    for value in inputs:
        if value.holds(obj) and value.fingerprint is not None:
            if value.stored.serializer == serializer and fingerprint(obj) == value.fingerprint:
                return value
            return None
    return None
