"""Step caching: the cache key, finding an earlier result with it, and resuming a failed run.

A step's cache key is the sha256 of its code hash, the sha256 of every input
artifact, its literal parameters (canonical JSON) and its output names. Each
step run carries its key and its outputs (digests and serializers) as tags,
so one indexed search finds a FINISHED run with the same key and everything
needed to reuse it; nothing is added to the stores' schema.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from conveyor.core.entities import Run, RunStatus
from conveyor.errors import StateError, ValidationError
from conveyor.runtime.values import StoredOutput
from conveyor.stores.artifacts.content import ContentAddressedStore
from conveyor.stores.metadata.base import RunStore

__all__ = [
    "TAG_CACHED",
    "TAG_CACHED_FROM",
    "TAG_CACHE_KEY",
    "TAG_ERROR",
    "TAG_KIND",
    "TAG_OUTPUTS",
    "TAG_PIPELINE",
    "TAG_RESUMED_FROM",
    "TAG_STEP",
    "CacheHit",
    "CacheIndex",
    "cache_key",
    "canonical_params",
    "outputs_tag",
    "param_texts",
    "resume_index",
]

TAG_KIND = "conveyor.kind"  # "pipeline" or "step"
TAG_PIPELINE = "conveyor.pipeline"
TAG_STEP = "conveyor.step"
TAG_CACHE_KEY = "conveyor.cache_key"
TAG_CACHED = "conveyor.cached"
TAG_CACHED_FROM = "conveyor.cached_from"
TAG_OUTPUTS = "conveyor.outputs"
TAG_ERROR = "conveyor.error"
TAG_RESUMED_FROM = "conveyor.resumed_from"

_KEY_VERSION = 1
_MAX_PARAM_TEXT = 6000


def _canonical(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return _canonical(value.value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} has no canonical form")


def canonical_params(literals: Mapping[str, Any]) -> str | None:
    """The literal parameters as canonical JSON, or None if one has no stable text form."""
    try:
        return json.dumps(literals, sort_keys=True, default=_canonical, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


def cache_key(
    code_hash: str,
    inputs: Mapping[str, str],
    params_json: str,
    outputs: Sequence[str],
) -> str:
    """The sha256 naming a step's result: its code, input digests, parameters and outputs."""
    material = json.dumps(
        [_KEY_VERSION, code_hash, sorted(inputs.items()), params_json, list(outputs)],
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


def param_texts(literals: Mapping[str, Any]) -> dict[str, str]:
    """Literal parameters as the text logged with the step's run (long values shortened)."""
    texts = {}
    for key, value in literals.items():
        if isinstance(value, (str, PurePath)):
            text = str(value)
        else:
            try:
                text = json.dumps(value, default=_canonical)
            except (TypeError, ValueError):
                text = repr(value)
        texts[key] = text if len(text) <= _MAX_PARAM_TEXT else text[: _MAX_PARAM_TEXT - 1] + "…"
    return texts


def outputs_tag(stored: Mapping[str, StoredOutput]) -> str:
    """The ``conveyor.outputs`` tag: each output's sha256, size and serializer, as JSON."""
    return json.dumps(
        {k: [s.sha256, s.size, s.serializer] for k, s in stored.items()}, separators=(",", ":")
    )


def _parse_outputs(text: str | None) -> dict[str, StoredOutput] | None:
    if not text:
        return None
    try:
        raw = json.loads(text)
        return {k: StoredOutput(str(v[0]), int(v[1]), str(v[2])) for k, v in raw.items()}
    except (ValueError, TypeError, IndexError, AttributeError):
        return None


@dataclass(frozen=True)
class CacheHit:
    """An earlier step run whose outputs can stand in for running the step."""

    run_id: str
    outputs: dict[str, StoredOutput]


def _hit(run: Run, outputs: Sequence[str], artifacts: ContentAddressedStore) -> CacheHit | None:
    stored = _parse_outputs(run.tags.get(TAG_OUTPUTS))
    if stored is None or sorted(stored) != sorted(outputs):
        return None
    # Garbage collection keeps referenced content, but a store may have lost it anyway.
    if not all(artifacts.exists(s.sha256) for s in stored.values()):
        return None
    return CacheHit(run.id, stored)


class CacheIndex:
    """Finds FINISHED step runs by cache key, straight from the metadata store.

    It reads the store without flushing the tracker: results of earlier pipeline
    runs were flushed when those runs ended.
    """

    def __init__(self, runs: RunStore, artifacts: ContentAddressedStore) -> None:
        self._runs = runs
        self._artifacts = artifacts

    def lookup(self, key: str, outputs: Sequence[str]) -> CacheHit | None:
        """The newest finished run with this key whose outputs are all still stored."""
        found = self._runs.search_runs(
            None,
            f"tags.`{TAG_CACHE_KEY}` = '{key}' and attributes.status = 'FINISHED'",
            ["attributes.start_time DESC"],
            max_results=1,
        )
        return _hit(found[0], outputs, self._artifacts) if found else None


def resume_index(
    runs: RunStore, artifacts: ContentAddressedStore, run: Run, pipeline: str
) -> dict[str, tuple[str, CacheHit]]:
    """The finished steps of an earlier pipeline run: step name → (cache key, outputs).

    Raises:
        ValidationError: ``run`` is not a run of this pipeline.
        StateError: ``run`` is still running.
    """
    if run.tags.get(TAG_KIND) != "pipeline" or run.tags.get(TAG_PIPELINE) != pipeline:
        raise ValidationError("resume", f"run {run.id} is not a run of pipeline {pipeline!r}")
    if run.status is RunStatus.RUNNING:
        raise StateError(f"run {run.id} is still running; resume it once it has ended")
    children = runs.search_runs(
        None,
        f"attributes.parent_run_id = '{run.id}' and attributes.status = 'FINISHED'",
        max_results=50_000,
    )
    index = {}
    for child in children:
        name, key = child.tags.get(TAG_STEP), child.tags.get(TAG_CACHE_KEY)
        stored = _parse_outputs(child.tags.get(TAG_OUTPUTS))
        if name and key and stored is not None:
            hit = _hit(child, list(stored), artifacts)
            if hit is not None:
                index[name] = (key, hit)
    return index
