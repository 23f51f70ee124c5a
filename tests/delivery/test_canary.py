"""Canary: traffic split, judged on a real capture log (Parquet files) and labels; auto verdicts."""

import pyarrow as pa
import pytest

from conveyor.delivery.canary import canary_status, evaluate_canary, start_canary
from conveyor.delivery.policy import parse_policy
from conveyor.errors import StateError, ValidationError
from conveyor.stores.capture import write_capture, write_feedback

T0 = 1_700_000_000_000
CANARY = {"share": 0.2, "requests": 40, "min_labels": 20, "max_latency_ratio": 1.5}


@pytest.fixture
def running(stores, cancer, good_model):
    """flights/1 at production; flights/2 cleared for production and started as a 20% canary."""
    X, _ = cancer
    for _ in range(2):
        stores.registry.register_model("flights", good_model, X.head(5))
    stores.registry.set_alias("flights", "production", 1, reason="setup", actor="test")
    stores.reached("flights", 2, "production")
    start_canary(
        "flights", 2, share=0.2, loop_store=stores.loop, actor="agent",
        reason="new data", now_ms=T0,
    )  # fmt: skip
    return stores


def _capture(stores, route, version, n, *, latency=5.0, errors=0, wrong=0, start=0):
    """``n`` one-row requests by ``version`` on ``route``; the first ``wrong`` mislabelled."""
    ids = [f"{route}-{start + i}" for i in range(n)]
    table = pa.table(
        {
            "request_id": ids,
            "row": pa.array([0] * n, pa.int32()),
            "timestamp": pa.array([T0 + 10 + start + i for i in range(n)], pa.int64()),
            "model": ["flights"] * n,
            "version": pa.array([version] * n, pa.int64()),
            "route": [route] * n,
            "latency_ms": [latency] * n,
            "status": pa.array([500 if i < errors else 200 for i in range(n)], pa.int16()),
            "in.x": [float(i) for i in range(n)],
            "out.prediction": pa.array([1] * n, pa.int64()),
        }
    )
    write_capture(stores.byte_store, "flights", table)
    labels = [0 if i < wrong else 1 for i in range(n)]
    write_feedback(stores.byte_store, "flights", ids, labels, timestamp_ms=T0 + 5000)


def _evaluate(stores, canary=CANARY, now=T0 + 60_000):
    return evaluate_canary(
        "flights", policy=parse_policy("flights", {"canary": canary}), loop_store=stores.loop,
        byte_store=stores.byte_store, registry=stores.registry, now_ms=now,
    )  # fmt: skip


def test_start_sets_the_traffic_split(running):
    traffic = running.loop.get_traffic("flights", "production")
    assert (traffic.canary_version, traffic.canary_share, traffic.actor) == (2, 0.2, "agent")
    status = canary_status(running.loop, "flights", "production")
    assert status["started_at"] == T0
    assert status["attempt"] == "0" * 16


def test_it_waits_for_enough_requests(running):
    _capture(running, "canary", 2, 10)
    _capture(running, "primary", 1, 40)
    decision = _evaluate(running)
    assert decision.action == "wait"
    assert decision.reasons[0].startswith("waiting: 10 canary requests so far, need 40 requests")
    assert running.loop.get_traffic("flights", "production").canary_version == 2
    assert running.loop.list_checks("flights", 2, "0" * 16)[-1].name == "promotion"  # none added


def test_a_healthy_canary_is_promoted_with_the_evidence(running):
    _capture(running, "canary", 2, 50, wrong=2)
    _capture(running, "primary", 1, 200, wrong=8)
    decision = _evaluate(running)
    assert decision.action == "promote", decision.reasons
    event = running.registry.history("flights", "production")[-1]
    assert (event.to_version, event.id) == (2, decision.event_id)
    assert event.reason.startswith(f"canary {'0' * 16}: canary.errors, canary.latency")
    assert running.loop.get_traffic("flights", "production").canary_version is None
    stored = {r.name: r for r in running.loop.list_checks("flights", 2, "0" * 16)}
    assert stored["canary.quality"].evidence["canary_labels"] == 50
    assert stored["canary.quality"].evidence["canary"] == pytest.approx(0.96)
    assert decision.evidence["canary"]["requests"] == 50


@pytest.mark.parametrize(
    ("canary_kw", "failed"),
    [
        ({"errors": 5}, "canary.errors"),
        ({"latency": 20.0}, "canary.latency"),
        ({"wrong": 20}, "canary.quality"),
    ],
)
def test_a_worse_canary_is_rolled_back_with_an_alert(running, canary_kw, failed):
    _capture(running, "canary", 2, 50, **canary_kw)
    _capture(running, "primary", 1, 200, wrong=4)
    decision = _evaluate(running)
    assert decision.action == "rollback"
    assert [c.name for c in decision.checks if not c.passed] == [failed]
    assert running.registry.get_alias("flights", "production").version == 1
    assert running.loop.get_traffic("flights", "production").canary_version is None
    (alert,) = running.loop.list_alerts(source="canary")
    assert alert.id == decision.alert_id
    assert alert.version == 2
    assert alert.message.startswith("canary flights/2 on production rolled back:")
    stored = running.loop.list_checks("flights", 2, "0" * 16)
    assert any(r.name == failed and not r.passed for r in stored)


def test_after_its_duration_a_canary_without_traffic_is_rolled_back(running):
    decision = _evaluate(running, CANARY | {"duration_s": 30}, now=T0 + 31_000)
    assert decision.action == "rollback"
    assert decision.reasons == ["the canary answered no requests"]


def test_quality_is_not_judged_without_enough_labels(running):
    _capture(running, "canary", 2, 50, wrong=50)
    _capture(running, "primary", 1, 50)
    decision = _evaluate(running, CANARY | {"min_labels": 100})
    quality = next(c for c in decision.checks if c.name == "canary.quality")
    assert quality.passed
    assert quality.detail.startswith("not judged: 50 canary")
    assert decision.action == "promote"


def test_no_canary_and_bad_input(stores, cancer, good_model):
    assert _evaluate(stores).action == "none"
    stores.registry.register_model("flights", good_model, cancer[0].head(5))
    kw = {"loop_store": stores.loop, "actor": "a", "reason": "r"}
    with pytest.raises(StateError, match="run first: conveyor deploy flights/1 --to production"):
        start_canary("flights", 1, share=0.1, **kw)
    with pytest.raises(ValidationError, match="share"):
        start_canary("flights", 1, share=1.0, **kw)
    with pytest.raises(ValidationError, match="version"):
        start_canary("flights", 0, share=0.1, **kw)


def test_an_approval_under_a_canary_policy_starts_the_canary(stores, cancer, good_model, holdout):
    from conveyor.delivery.promotion import approve

    X, _ = cancer
    for _ in range(2):
        stores.registry.register_model("flights", good_model, X.head(5))
    stores.registry.set_alias("flights", "production", 1, reason="setup", actor="test")
    stores.reached("flights", 2, "staging")
    policy = parse_policy("flights", {"canary": CANARY, "load": {"requests": 20}})
    # No checks ran for production yet: approving runs them, then starts the canary.
    result = approve(
        "flights/2", "production", registry=stores.registry, loop_store=stores.loop,
        policy=policy, actor="alice", reason="March looks fine", holdout=holdout,
    )  # fmt: skip
    assert result.passed
    assert result.canary_started
    assert not result.moved
    assert [c.name for c in result.checks] == ["environment", "infra", "load", "quality"]
    assert stores.registry.get_alias("flights", "production").version == 1
    status = canary_status(stores.loop, "flights", "production")
    assert (status["version"], status["share"], status["attempt"]) == (2, 0.2, result.attempt)
    assert (
        status["reason"] == f"deploy {result.attempt} passed; approved by alice: March looks fine"
    )


def test_canary_verdicts_on_postgresql(pg_stores, cancer, good_model):
    pg = pg_stores
    for _ in range(2):
        pg.registry.register_model("flights", good_model, cancer[0].head(5))
    pg.registry.set_alias("flights", "production", 1, reason="setup", actor="test")
    pg.reached("flights", 2, "production")
    start_canary("flights", 2, share=0.2, loop_store=pg.loop, actor="a", reason="r", now_ms=T0)
    _capture(pg, "canary", 2, 50, errors=10)
    _capture(pg, "primary", 1, 100)
    decision = _evaluate(pg)
    assert decision.action == "rollback"
    assert pg.loop.list_alerts(source="canary")[0].id == decision.alert_id
    assert pg.registry.get_alias("flights", "production").version == 1


def test_regression_quality_by_mae_ignores_failed_rows(running):
    def write(route, version, error, n=40):
        ids = [f"{route}-{i}" for i in range(n)]
        table = pa.table(
            {
                "request_id": ids,
                "row": pa.array([0] * n, pa.int32()),
                "timestamp": pa.array([T0 + 10 + i for i in range(n)], pa.int64()),
                "model": ["flights"] * n,
                "version": pa.array([version] * n, pa.int64()),
                "route": [route] * n,
                "latency_ms": [5.0] * n,
                "status": pa.array([500] + [200] * (n - 1), pa.int16()),
                "out.prediction": pa.array([None] + [10.0 + error] * (n - 1), pa.float64()),
            }
        )
        write_capture(running.byte_store, "flights", table)
        write_feedback(running.byte_store, "flights", ids, [10.0] * n, timestamp_ms=T0 + 1)

    write("canary", 2, 3.0)
    write("primary", 1, 1.0)
    spec = CANARY | {"metric": "mae", "min_quality_delta": -0.5, "max_error_rate_delta": 0.05}
    decision = _evaluate(running, spec)
    quality = next(c for c in decision.checks if c.name == "canary.quality")
    assert quality.evidence["canary"] == pytest.approx(3.0)
    assert quality.evidence["primary"] == pytest.approx(1.0)
    assert quality.evidence["canary_labels"] == 39
    assert not quality.passed
    assert decision.action == "rollback"
