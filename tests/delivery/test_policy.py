"""The deployments: section of conveyor.yaml: defaults, the issue's example, and bad values."""

import pytest

from conveyor.delivery.policy import (
    DeploymentPolicy,
    MetricTarget,
    parse_deployments,
    policy_for,
)
from conveyor.errors import ConfigError, ValidationError

EXAMPLE = {
    "flights": {
        "stages": ["staging", "production"],
        "production": {"approval": "required", "approvers": ["alice", "bob"]},
        "resources": {"memory_mb": 512, "cpu": 1},
        "slo": {"p50_ms": 20, "p99_ms": 100, "error_rate": 0.0},
        "load": {"requests": 200, "concurrency": 4},
        "quality": {"roc_auc": {"min": 0.65}},
        "gate": {"against": "production", "metric": "roc_auc", "max_drop": 0.01},
        "canary": {
            "share": 0.2,
            "requests": 500,
            "max_error_rate_delta": 0.01,
            "max_latency_ratio": 1.5,
            "min_quality_delta": -0.02,
        },
    }
}


def test_no_section_gives_staged_promotion_with_approval_for_production():
    assert parse_deployments(None) == {}
    policy = policy_for({}, "flights")
    assert policy.stages == ("staging", "production")
    assert not policy.stage("staging").requires_approval
    assert policy.stage("production").requires_approval
    assert policy.stage("production").may_approve("anyone")
    assert policy.before("production") == ("staging",)
    assert policy.gate_alias() == "production"
    assert policy.canary is None


def test_the_issue_example_parses_to_its_values():
    policy = parse_deployments(EXAMPLE)["flights"]
    production = policy.stage("production")
    assert production.approvers == ("alice", "bob")
    assert production.may_approve("alice")
    assert not production.may_approve("mallory")
    assert (policy.resources.memory_mb, policy.resources.cpu) == (512, 1)
    assert (policy.slo.p50_ms, policy.slo.p99_ms, policy.slo.error_rate) == (20, 100, 0)
    assert (policy.load.requests, policy.load.concurrency) == (200, 4)
    assert policy.quality == {"roc_auc": MetricTarget(min=0.65)}
    assert (policy.gate.metric, policy.gate.max_drop) == ("roc_auc", 0.01)
    assert policy.canary is not None
    assert (policy.canary.share, policy.canary.requests) == (0.2, 500)
    assert policy.canary.min_quality_delta == -0.02
    assert policy_for({"flights": policy}, "other") == DeploymentPolicy()


def test_auto_approval_and_shorthand_targets():
    section = {"m": {"production": {"approval": "auto"}, "quality": {"roc_auc": 0.7, "rmse": 3}}}
    policy = parse_deployments(section)["m"]
    assert not policy.stage("production").requires_approval
    assert policy.quality["roc_auc"] == MetricTarget(min=0.7)
    assert policy.quality["rmse"] == MetricTarget(max=3.0)  # lower is better
    assert policy.quality["roc_auc"].violation(0.6) == "0.6 < min 0.7"
    assert policy.quality["rmse"].violation(2.0) is None


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"flights": {"slo": {"p99_ms": -1}}}, "deployments.flights.slo.p99_ms"),
        ({"flights": {"slo": {"p50_ms": 50, "p99_ms": 10}}}, "deployments.flights.slo.p99_ms"),
        ({"flights": {"load": {"requests": 2.5}}}, "deployments.flights.load.requests"),
        (
            {"flights": {"production": {"approval": "maybe"}}},
            "deployments.flights.production.approval",
        ),
        (
            {"flights": {"production": {"approvers": [1]}}},
            "deployments.flights.production.approvers",
        ),
        ({"flights": {"canary": {"share": 1.5}}}, "deployments.flights.canary.share"),
        ({"flights": {"canary": {"metric": "auc"}}}, "deployments.flights.canary.metric"),
        ({"flights": {"stages": []}}, "deployments.flights.stages"),
        ({"flights": {"stages": ["staging", "staging"]}}, "deployments.flights.stages"),
        ({"flights": {"stages": ["prod uction"]}}, "deployments.flights.stages"),
        ({"flights": {"replicas": 3}}, "deployments.flights.replicas"),
        (
            {"flights": {"quality": {"roc_auc": {"min": 0.9, "max": 0.1}}}},
            "deployments.flights.quality.roc_auc",
        ),
        (
            {"flights": {"quality": {"roc_auc": {"above": 0.9}}}},
            "deployments.flights.quality.roc_auc.above",
        ),
        ({"flights": {"resources": {"cpu": True}}}, "deployments.flights.resources.cpu"),
        ({"flights": {"sandbox": {"network": "open"}}}, "deployments.flights.sandbox.network"),
        ({"flights": {"gate": {"against": 3}}}, "deployments.flights.gate.against"),
        ({"flights": "yes"}, "deployments.flights"),
        (["flights"], "deployments"),
    ],
)
def test_bad_values_name_the_key(section, key):
    with pytest.raises(ConfigError) as info:
        parse_deployments(section)
    assert str(info.value).startswith(f"{key}:"), str(info.value)


def test_a_stage_outside_the_policy_is_refused():
    policy = parse_deployments({"m": {"stages": ["staging", "prod"]}})["m"]
    assert not policy.stage("prod").requires_approval  # only "production" defaults to approval
    with pytest.raises(ValidationError, match=r"stage.*staging, prod"):
        policy.stage("production")
