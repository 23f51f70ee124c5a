"""Model packages: a version's files in the content-addressed store, listed by one manifest.

The files are the model in its format, ``signature.json``, ``input_example.parquet``,
``expected_output.npy`` (or ``.json``) and ``environment.json``; ``manifest.json``
lists each with its sha256 and size, with the format, the trust flag, the metrics
and the lineage. The version row records the manifest's sha256, and every read
verifies every hash, so a package cannot change under its version number.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from conveyor.core.entities import SourceVersion
from conveyor.core.registry import Environment, ModelVersion, Signature
from conveyor.errors import StateError, ValidationError
from conveyor.registry.formats import ModelFormat, format_named, save_model
from conveyor.registry.loaded import LoadedModel
from conveyor.registry.signature import (
    Example,
    as_example,
    decode_output,
    encode_output,
    example_from_parquet,
    example_to_parquet,
    infer_signature,
    outputs_match,
    prepare_input,
)
from conveyor.stores.artifacts.content import ContentAddressedStore

__all__ = [
    "Lineage",
    "Package",
    "build_package",
    "capture_environment",
    "installed_version",
    "load_package",
]

PACKAGE_LAYOUT = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a version came from: its run, its code and its data."""

    run_id: str | None
    source: SourceVersion
    data_digests: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Package:
    """A package stored in the artifact store, ready to be recorded as a version."""

    format: ModelFormat
    manifest_sha256: str
    files: dict[str, str]
    signature: Signature
    environment: Environment
    data_digests: dict[str, str]

    @property
    def trusted(self) -> bool:
        """Whether loading it runs code (and so needs the recorded trust flag)."""
        return self.format.executes_code


def _json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, indent=1).encode()


def capture_environment(packages: Iterable[str]) -> Environment:
    """The running Python and the installed versions of ``packages`` (missing ones skipped)."""
    found: dict[str, str] = {}
    for name in dict.fromkeys(packages):
        version = installed_version(name)
        if version is not None:
            found[name] = version
    return Environment(platform.python_version(), found)


def installed_version(name: str) -> str | None:
    """The installed version of a distribution or of the one that provides module ``name``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    # The module may come from another distribution of it (xgboost from xgboost-cpu).
    for dist in importlib.metadata.packages_distributions().get(name, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def build_package(
    artifacts: ContentAddressedStore,
    model: Any,
    input_example: Any,
    *,
    trusted: bool,
    metrics: Mapping[str, float],
    lineage: Lineage,
) -> Package:
    """Save ``model`` safely, check that the saved files reproduce it, and store the package.

    Raises:
        UnsupportedModelError: no safe format holds the model and it is not trusted.
        ValidationError: the input example is unusable, or the saved model predicts
            differently from the model on it.
    """
    example = as_example(input_example, "input_example")
    fmt, saved = save_model(model, trusted)
    signature = infer_signature(example)
    prepared = prepare_input(signature, example)
    expected = fmt.live(model, saved).predict(prepared)
    _check_round_trip(fmt, fmt.load(saved.files, saved.meta).predict(prepared), expected)
    example_bytes = example_to_parquet(example)
    output_name, output_bytes = encode_output(expected)
    extra = ("pandas",) if isinstance(example, pd.DataFrame) else ()
    environment = capture_environment((*saved.packages, *extra, "conveyor-mlops"))
    files = {
        **saved.files,
        "signature.json": _json(signature.to_dict()),
        "input_example.parquet": example_bytes,
        output_name: output_bytes,
        "environment.json": _json(environment.to_dict()),
    }
    stored = {name: artifacts.put_bytes(data) for name, data in files.items()}
    digests = {"input_example": hashlib.sha256(example_bytes).hexdigest()}
    digests |= dict(lineage.data_digests)
    manifest = {
        "conveyor_model_package": PACKAGE_LAYOUT,
        "format": fmt.name,
        "executes_code": fmt.executes_code,
        "trusted": fmt.executes_code,
        "format_meta": saved.meta,
        "model_files": sorted(saved.files),
        "expected_output": output_name,
        "files": {n: {"sha256": d.sha256, "size": d.size} for n, d in sorted(stored.items())},
        "metrics": dict(metrics),
        "lineage": {
            "run_id": lineage.run_id,
            "git_sha": lineage.source.git_sha,
            "diff_hash": lineage.source.diff_hash,
            "data_digests": digests,
        },
    }
    manifest_sha = artifacts.put_bytes(_json(manifest)).sha256
    names = {n: d.sha256 for n, d in stored.items()} | {MANIFEST: manifest_sha}
    return Package(fmt, manifest_sha, names, signature, environment, digests)


def _check_round_trip(fmt: ModelFormat, loaded: Any, expected: Any) -> None:
    if not outputs_match(expected, loaded):
        raise ValidationError(
            "model",
            f"saved as {fmt.name}, it predicts differently from the model on the input "
            "example; register it with another format (e.g. convert it to ONNX)",
        )


def load_package(artifacts: ContentAddressedStore, version: ModelVersion) -> LoadedModel:
    """Load a version from its package, verifying every file and the trust flag.

    Raises:
        ArtifactCorruptedError: a file no longer matches its sha256.
        StateError: the package runs code on load and the version does not record
            ``trusted=True``, or the manifest disagrees with the version.
    """
    manifest = json.loads(artifacts.get_bytes(version.manifest_sha256))
    fmt = format_named(str(manifest.get("format")))
    if fmt.name != version.format:
        raise StateError(
            f"{version.ref}: its manifest says {fmt.name}, its record {version.format}"
        )
    if fmt.executes_code and not (version.trusted and manifest.get("trusted") is True):
        raise StateError(
            f"refusing to load {version.ref}: it is stored as {fmt.name}, which runs code when "
            "loaded, and it was not registered with trusted=True"
        )
    files = {n: artifacts.get_bytes(e["sha256"]) for n, e in manifest["files"].items()}
    model = fmt.load({n: files[n] for n in manifest["model_files"]}, manifest["format_meta"])
    signature = Signature.from_dict(json.loads(files["signature.json"]))
    example: Example = example_from_parquet(files["input_example.parquet"], signature)
    output_name = manifest["expected_output"]
    expected = decode_output(output_name, files[output_name])
    return LoadedModel(version, model, signature, example, expected)
