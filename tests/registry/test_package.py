import dataclasses
import hashlib
import json

import numpy as np
import pytest

from conveyor.core.entities import SourceVersion
from conveyor.errors import StateError, ValidationError
from conveyor.registry.package import Lineage, build_package, capture_environment, load_package
from conveyor.stores.backends import open_artifact_store


class Noisy:
    """Predicts something new every time: no saved copy can reproduce it."""

    def predict(self, X):
        return np.random.default_rng().random(len(X))


@pytest.fixture
def artifacts(tmp_path):
    return open_artifact_store(str(tmp_path / "artifacts"))


@pytest.fixture
def lineage():
    return Lineage("r" * 32, SourceVersion("abc", None), {"train": "0" * 64})


def test_the_manifest_lists_every_file_with_its_digest(artifacts, lineage, cancer, logistic):
    X, _ = cancer
    package = build_package(
        artifacts, logistic, X.head(5), trusted=False, metrics={"auc": 0.9}, lineage=lineage
    )
    manifest = json.loads(artifacts.get_bytes(package.manifest_sha256))
    assert set(manifest["files"]) == {
        "model.skops",
        "signature.json",
        "input_example.parquet",
        "expected_output.npy",
        "environment.json",
    }
    for name, entry in manifest["files"].items():
        data = artifacts.get_bytes(entry["sha256"])
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (entry["sha256"], entry["size"])
        assert package.files[name] == entry["sha256"]
    assert package.files["manifest.json"] == package.manifest_sha256
    assert (manifest["format"], manifest["trusted"], manifest["metrics"]) == (
        "skops",
        False,
        {"auc": 0.9},
    )
    assert manifest["lineage"]["run_id"] == "r" * 32
    assert manifest["lineage"]["data_digests"] == {
        "input_example": package.files["input_example.parquet"],
        "train": "0" * 64,
    }
    env = json.loads(artifacts.get_bytes(package.files["environment.json"]))
    assert env == package.environment.to_dict()


def test_a_model_its_saved_copy_cannot_reproduce_is_refused(artifacts, lineage, cancer):
    X, _ = cancer
    with pytest.raises(ValidationError, match="predicts differently"):
        build_package(artifacts, Noisy(), X.head(5), trusted=True, metrics={}, lineage=lineage)


def test_loading_checks_the_record_against_the_manifest(tmp_path, registry, cancer, logistic):
    X, _ = cancer
    version = registry.register_model("m", logistic, X.head(5))
    with pytest.raises(StateError, match="its manifest says skops, its record onnx"):
        load_package(registry.artifacts, dataclasses.replace(version, format="onnx"))


def test_a_pickle_needs_trust_in_the_record_and_the_manifest(registry, cancer):
    X, _ = cancer
    version = registry.register_model("noisy-free", _Constant(), X.head(5), trusted=True)
    assert load_package(registry.artifacts, version).predict(X).shape == (len(X),)
    untrusted = dataclasses.replace(version, trusted=False)
    with pytest.raises(StateError, match="refusing to load noisy-free/1"):
        load_package(registry.artifacts, untrusted)


class _Constant:
    def predict(self, X):
        return np.zeros(len(X))


def test_capture_environment_skips_missing_packages():
    env = capture_environment(["numpy", "no-such-package-here", "numpy"])
    assert list(env.packages) == ["numpy"]
    assert env.python.count(".") == 2
