"""The four CD checks against real registered versions and a real sandboxed server process."""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

from conveyor.core.registry import Environment
from conveyor.delivery.checks import (
    Holdout,
    build_request,
    check_environment,
    check_infra,
    check_load,
    check_quality,
    read_example,
    run_checks,
)
from conveyor.delivery.policy import DeploymentPolicy, parse_policy
from conveyor.delivery.sandbox import Sandbox, network_isolation_available
from conveyor.errors import StateError, ValidationError


@pytest.fixture
def good(stores, cancer, good_model):
    X, _ = cancer
    return stores.registry.register_model("flights", good_model, X.head(8))


@pytest.fixture(scope="module")
def served(tmp_path_factory, cancer, good_model):
    """A good version in one running sandbox, shared by this module's infra and load tests."""
    from conveyor.registry import Registry
    from conveyor.stores.backends import open_artifact_store, open_model_store

    root = tmp_path_factory.mktemp("served")
    models = open_model_store(f"sqlite:///{root / 'conveyor.db'}")
    registry = Registry(models, open_artifact_store(str(root / "artifacts")))
    version = registry.register_model("flights", good_model, cancer[0].head(8))
    with Sandbox(registry, version, DeploymentPolicy().sandbox) as sandbox:
        yield sandbox
    models.close()


def test_a_sound_version_passes_all_four_checks_in_order(stores, good, holdout):
    policy = parse_policy("flights", {"quality": {"roc_auc": 0.9}, "load": {"requests": 40}})
    results = run_checks(stores.registry, good, policy, holdout)
    assert all(r.passed for r in results), [(r.detail, r.evidence) for r in results]
    assert [r.name for r in results] == ["environment", "infra", "load", "quality"]
    env, infra, load, quality = (r.evidence for r in results)
    assert 50 < env["memory_mb"] < policy.resources.memory_mb  # measured in the server process
    assert infra["example_rows"] == 8
    assert infra["protocol"] == "v2"
    assert infra["network_isolated"] is network_isolation_available()
    assert load["requests"] == 40
    assert load["error_rate"] == 0
    assert 0 < load["p50_ms"] <= load["p99_ms"]
    assert quality["source"] == "rows 400-568"
    assert quality["metrics"]["roc_auc"] > 0.9


def test_the_server_is_sandboxed_and_reproduces_the_example(served, cancer, good_model):
    example, expected = read_example(served.registry, served.version)
    assert np.array_equal(expected, good_model.predict(cancer[0].head(8)))
    result = check_infra(served, example, expected)
    assert result.passed, result.detail
    assert result.evidence["outputs"] == {"predict": [8], "predict_proba": [8, 2]}
    theirs, ours = os.readlink(f"/proc/{served.pid}/ns/net"), os.readlink("/proc/self/ns/net")
    assert (theirs != ours) is served.network_isolated is network_isolation_available()


def test_load_within_and_beyond_the_slo_on_one_server(served):
    example, _ = read_example(served.registry, served.version)
    easy = parse_policy("flights", {"load": {"requests": 30, "concurrency": 3, "rows": 5}})
    ok = check_load(served, example, easy)
    assert ok.passed, ok.detail
    assert ok.evidence["rows_per_request"] == 5
    assert ok.evidence["cpu_cores_used"] is not None
    tight = parse_policy(
        "flights", {"slo": {"p50_ms": 0.001, "p99_ms": 0.002}, "load": {"requests": 10}}
    )
    slow = check_load(served, example, tight)
    assert not slow.passed
    assert "p50" in slow.detail
    assert "> SLO 0.001 ms" in slow.detail
    assert slow.evidence["p50_ms"] > 0.001
    # 200-row bodies: the server parses and predicts, the client only sends the same
    # bytes, so the server is the busy side (about a core) even on a loaded machine.
    starved = parse_policy(
        "flights",
        {"resources": {"cpu": 0.01}, "load": {"requests": 600, "concurrency": 4, "rows": 200}},
    )
    hungry = check_load(served, example, starved)
    assert not hungry.passed, hungry.evidence
    assert hungry.evidence["wall_s"] >= 0.1  # long enough for the CPU rule to apply
    assert "CPU > resources.cpu 0.01" in hungry.detail


def test_nan_in_any_output_fails_infra(stores, cancer, nan_model):
    X, _ = cancer
    version = stores.registry.register_model("flights", nan_model, X.head(5))
    results = run_checks(stores.registry, version, DeploymentPolicy())
    assert [(r.name, r.passed) for r in results] == [("environment", True), ("infra", False)]
    assert results[-1].evidence["non_finite"] == {"predict_proba": {"nan": 10, "inf": 0}}
    assert "NaN" in results[-1].detail


def test_a_package_the_lock_needs_at_another_version_fails_environment(good):
    locked = dataclasses.replace(
        good,
        environment=Environment(
            good.environment.python, {**good.environment.packages, "scikit-learn": "0.0.1"}
        ),
    )
    result = check_environment(locked, DeploymentPolicy(), None)
    assert not result.passed
    assert "scikit-learn 0.0.1 needed, found" in result.detail
    assert result.evidence["mismatches"]["scikit-learn"]["needs"] == "0.0.1"
    gone = dataclasses.replace(good, environment=Environment("2.7.18", {"no-such-package": "1.0"}))
    result = check_environment(gone, DeploymentPolicy(), 10.0)
    assert "no-such-package 1.0 needed, missing" in result.detail
    assert "Python 2.7.18 needed" in result.detail


def test_memory_and_cpu_beyond_the_resources_fail_environment(good):
    small = parse_policy("flights", {"resources": {"memory_mb": 64, "cpu": 64}})
    result = check_environment(good, small, 300.0)
    assert not result.passed
    assert "memory at load 300 MiB > resources.memory_mb 64" in result.detail
    assert "resources.cpu 64 >" in result.detail


def test_a_server_that_cannot_start_in_its_limits_fails_infra(stores, good):
    policy = parse_policy("flights", {"sandbox": {"memory_mb": 256}})
    results = run_checks(stores.registry, good, policy)
    assert [(r.name, r.passed) for r in results] == [("environment", True), ("infra", False)]
    assert "exited with code" in results[-1].detail
    with pytest.raises(StateError, match=r"did not answer health within 0\.01 s"):
        Sandbox(
            stores.registry, good, parse_policy("f", {"sandbox": {"timeout_s": 0.01}}).sandbox
        ).start()


def test_quality_targets_and_the_gate_against_the_champion(
    stores, cancer, good, worse_model, holdout
):
    X, _ = cancer
    stores.registry.set_alias("flights", "production", good.version)
    worse = stores.registry.register_model("flights", worse_model, X.head(5))
    candidate = stores.registry.load_model(worse.ref)
    champion = stores.registry.load_model("flights@production")
    policy = parse_policy("flights", {"gate": {"metric": "roc_auc", "max_drop": 0.01}})
    result = check_quality(candidate, champion, policy, holdout)
    assert not result.passed
    assert "worse than the champion flights/1 at production: roc_auc" in result.detail
    gate = result.evidence["gate"]
    assert gate["drop"] > 0.01
    assert gate["champion_value"] > gate["candidate"]
    assert check_quality(champion, None, policy, holdout).passed  # no champion: targets alone
    high = parse_policy("flights", {"quality": {"roc_auc": {"min": 0.999}, "f2": 0.5}})
    result = check_quality(champion, None, high, holdout)
    assert "roc_auc 0.9" in result.detail
    assert "< min 0.999" in result.detail
    assert "f2 not measured" in result.detail


def test_without_a_holdout_the_recorded_metrics_decide(stores, cancer, good_model, worse_model):
    X, _ = cancer
    champ = stores.registry.register_model("m", good_model, X.head(5), metrics={"roc_auc": 0.95})
    chall = stores.registry.register_model("m", worse_model, X.head(5), metrics={"roc_auc": 0.90})
    load = stores.registry.load_model
    result = check_quality(load(chall.ref), load(champ.ref), DeploymentPolicy())
    assert not result.passed
    assert result.evidence["source"] == "recorded metrics"


def test_holdout_is_validated():
    X = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(ValidationError, match=r"holdout\.y"):
        Holdout(X, [1])
    with pytest.raises(ValidationError, match="missing labels"):
        Holdout(X, [1, None])
    with pytest.raises(ValidationError, match="at least one row"):
        Holdout(X.iloc[:0], [])


def test_requests_carry_every_column_type():
    frame = pd.DataFrame({"x": [1.5, np.nan], "n": [1, 2], "b": [True, False], "s": ["a", "b"]})
    request = build_request("m", frame, rows=3)
    body = json.loads(request.body)
    assert request.path == "/v2/models/m/infer"
    assert [i["datatype"] for i in body["inputs"]] == ["FP64", "INT64", "BOOL", "BYTES"]
    assert body["inputs"][3]["data"] == ["a", "b", "a"]
    dated = frame.assign(t=pd.to_datetime(["2013-01-01", "2013-01-02"]))
    request = build_request("m", dated)
    assert request.path == "/invocations"
    assert "dataframe_split" in json.loads(request.body)
    tensor = build_request("m", np.ones((2, 3)))
    assert json.loads(tensor.body)["inputs"][0]["shape"] == [2, 3]
