"""Staged promotion: checks stop bad challengers with the alias unchanged; approvals; rollback."""

import pytest

from conveyor.core.loop import Traffic
from conveyor.delivery.policy import parse_policy
from conveyor.delivery.promotion import approve, checks_behind, deploy, rollback
from conveyor.errors import StateError, ValidationError

POLICY = {
    "production": {"approval": "required", "approvers": ["alice", "bob"]},
    "quality": {"roc_auc": {"min": 0.65}},
    "gate": {"metric": "roc_auc", "max_drop": 0.01},
    "load": {"requests": 30, "concurrency": 3},
}


@pytest.fixture
def champion(stores, cancer, good_model):
    """flights/1 at staging and production, having passed both."""
    X, _ = cancer
    v1 = stores.registry.register_model("flights", good_model, X.head(5))
    for stage in ("staging", "production"):
        stores.registry.set_alias("flights", stage, 1, reason="setup", actor="test")
        stores.reached("flights", 1, stage)
    return v1


def _deploy(stores, ref, stage, policy=POLICY, **kw):
    return deploy(
        ref, stage, registry=stores.registry, loop_store=stores.loop,
        policy=parse_policy("flights", policy), **kw,
    )  # fmt: skip


def _approve(stores, ref, stage, actor, reason="checked the evidence", policy=POLICY):
    return approve(
        ref, stage, registry=stores.registry, loop_store=stores.loop,
        policy=parse_policy("flights", policy), actor=actor, reason=reason,
    )  # fmt: skip


def _stopped_at(stores, result, name):
    assert not result.passed
    assert not result.moved
    assert result.failed is not None
    assert result.failed.name == name
    assert result.checks[-1].name == name  # nothing ran after the check that caught it
    assert stores.registry.get_alias("flights", result.stage).version == 1
    stored = stores.loop.list_checks("flights", result.to_version, result.attempt)
    assert [(r.name, r.passed) for r in stored] == [(c.name, c.passed) for c in result.checks]
    assert f"stopped at the {name} check" in result.message
    return stored[-1]


def test_a_challenger_with_nan_is_stopped_at_infra(stores, champion, cancer, nan_model):
    stores.registry.register_model("flights", nan_model, cancer[0].head(5))
    result = _deploy(stores, "flights/2", "staging")
    record = _stopped_at(stores, result, "infra")
    assert record.evidence["non_finite"]["predict_proba"]["nan"] == 10


def test_a_challenger_slower_than_the_slo_is_stopped_at_load(stores, champion, cancer, good_model):
    stores.registry.register_model("flights", good_model, cancer[0].head(5))
    tight = POLICY | {"slo": {"p50_ms": 0.001, "p99_ms": 0.01}}
    result = _deploy(stores, "flights/2", "staging", tight)
    record = _stopped_at(stores, result, "load")
    assert record.evidence["p50_ms"] > 0.001
    assert record.evidence["slo"]["p50_ms"] == 0.001


def test_a_challenger_worse_than_the_champion_is_stopped_at_quality(
    stores, champion, cancer, worse_model, holdout
):
    stores.registry.register_model("flights", worse_model, cancer[0].head(5))
    result = _deploy(stores, "flights/2", "staging", holdout=holdout)
    record = _stopped_at(stores, result, "quality")
    assert record.evidence["gate"]["champion"] == "flights/1"
    assert record.evidence["gate"]["drop"] > 0.01


def test_staging_then_production_with_an_approval(stores, cancer, good_model, holdout):
    stores.registry.register_model("flights", good_model, cancer[0].head(5))
    staged = _deploy(stores, "flights/1", "staging", holdout=holdout, actor="ci")
    assert staged.passed
    assert staged.moved
    assert staged.from_version is None
    assert [c.name for c in staged.checks] == ["environment", "infra", "load", "quality"]
    assert stores.registry.get_alias("flights", "staging").version == 1

    pending = _deploy(stores, "flights/1", "production", holdout=holdout)
    assert pending.passed
    assert pending.pending_approval
    assert not pending.moved
    # One sandbox for both stages: staging's environment, infra and load results stand.
    reused = [c.evidence.get("reused_from") for c in pending.checks]
    assert reused == [staged.attempt, staged.attempt, staged.attempt, None]
    assert "alice or bob may approve with conveyor approve flights/1 --to production" in (
        pending.message
    )
    with pytest.raises(Exception, match="production"):
        stores.registry.get_alias("flights", "production")

    with pytest.raises(StateError) as refused:
        _approve(stores, "flights/1", "production", actor="mallory")
    assert "'mallory' may not approve flights/1 for production: only alice or bob" in str(
        refused.value
    )
    assert 'conveyor approve flights/1 --to production --reason "…"' in str(refused.value)

    done = _approve(stores, "flights/1", "production", actor="alice", reason="AUC 0.99 on March")
    assert done.moved
    assert done.attempt == pending.attempt
    event = stores.registry.history("flights", "production")[-1]
    assert event.actor == "alice"
    assert event.to_version == 1
    assert f"deploy {pending.attempt}: environment, infra, load, quality passed" in event.reason
    assert "approved by alice: AUC 0.99 on March" in event.reason
    behind = checks_behind(stores.loop, "flights", event.reason)
    names = [r.name for r in behind]
    assert names == ["environment", "infra", "load", "quality", "approval", "approval", "promotion"]
    assert behind[-2].evidence == {
        "status": "granted", "actor": "alice", "reason": "AUC 0.99 on March"
    }  # fmt: skip


def test_production_before_staging_is_refused(stores, cancer, good_model):
    stores.registry.register_model("flights", good_model, cancer[0].head(5))
    with pytest.raises(StateError, match="run first: conveyor deploy flights/1 --to staging"):
        _deploy(stores, "flights/1", "production")
    with pytest.raises(StateError, match="has not reached staging"):
        _approve(stores, "flights/1", "production", actor="alice")


def test_approvals_need_a_reason_a_stage_that_asks_for_them_and_passed_checks(
    stores, champion, cancer, good_model
):
    stores.registry.register_model("flights", good_model, cancer[0].head(5))
    stores.reached("flights", 2, "staging")
    with pytest.raises(ValidationError, match="reason"):
        _approve(stores, "flights/2", "production", actor="alice", reason="  ")
    with pytest.raises(StateError, match="staging needs no approval"):
        _approve(stores, "flights/2", "staging", actor="alice")
    with pytest.raises(StateError, match="already at production"):
        _approve(stores, "flights/1", "production", actor="alice")
    from conveyor.core.loop import CheckRecord

    stores.loop.add_checks(
        [CheckRecord("flights", 2, "production", "load", False, "p99 too high", {}, "a" * 16)]
    )
    with pytest.raises(StateError, match="failed its latest checks for production"):
        _approve(stores, "flights/2", "production", actor="bob")
    assert stores.registry.get_alias("flights", "production").version == 1


def test_a_version_already_at_the_stage_is_not_checked_again(stores, champion):
    result = _deploy(stores, "flights/1", "staging")
    assert result.passed
    assert not result.moved
    assert result.checks == []
    assert result.message == "flights/1 is already at staging"


def test_rollback_restores_the_previous_version_and_stops_a_canary(
    stores, champion, cancer, good_model
):
    stores.registry.register_model("flights", good_model, cancer[0].head(5))
    stores.registry.set_alias("flights", "production", 2, reason="setup", actor="test")
    stores.loop.set_traffic(Traffic("flights", "production", 3, 0.2, actor="t", reason="canary"))
    event = rollback(
        "flights", "production", registry=stores.registry, loop_store=stores.loop,
        actor="carol", reason="errors after the move",
    )  # fmt: skip
    assert (event.from_version, event.to_version, event.actor) == (2, 1, "carol")
    assert stores.registry.get_alias("flights", "production").version == 1
    traffic = stores.loop.get_traffic("flights", "production")
    assert traffic is not None
    assert traffic.canary_version is None
    assert traffic.canary_share == 0


def test_unknown_stage_and_ref_are_clear_errors(stores, champion):
    with pytest.raises(ValidationError, match="stage"):
        _deploy(stores, "flights/1", "prod")
    with pytest.raises(KeyError, match="flights"):
        _deploy(stores, "flights/9", "staging")
