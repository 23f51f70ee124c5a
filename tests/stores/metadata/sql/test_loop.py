"""The closed loop's store on SQLite and PostgreSQL: evaluations, alerts, triggers,
leases (raced by threads and by two stores), state, checks and traffic."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from conveyor.core.loop import CheckRecord, Evaluation, NewAlert, Traffic
from conveyor.errors import NotFoundError, ValidationError
from conveyor.stores.backends import open_loop_store
from conveyor.stores.metadata.sql.loop import SqlLoopStore


@pytest.fixture
def store(metadata_url: str) -> Iterator[SqlLoopStore]:
    s = open_loop_store(metadata_url)
    assert isinstance(s, SqlLoopStore)
    yield s
    s.close()


def test_evaluations_round_trip_oldest_window_first(store: SqlLoopStore) -> None:
    for end in (300, 100, 200):
        store.add_evaluation(
            Evaluation("m1", "flights", end - 100, end, "ok", 0.1, {"auc": 0.7, "n": end})
        )
    store.add_evaluation(Evaluation("m2", "other", 0, 50, "drift", 0.9))
    got = store.list_evaluations("m1")
    assert [e.window_end for e in got] == [100, 200, 300]
    assert got[0].metrics == {"auc": 0.7, "n": 100}
    assert got[0].id > 0
    assert got[0].created_at > 0
    assert [e.window_end for e in store.list_evaluations("m1", limit=2)] == [200, 300]
    assert [e.monitor for e in store.list_evaluations(model="other")] == ["m2"]


def test_an_evaluation_ending_before_it_starts_is_refused(store: SqlLoopStore) -> None:
    with pytest.raises(ValidationError, match="window_end"):
        store.add_evaluation(Evaluation("m1", "flights", 10, 5, "ok"))
    assert store.list_evaluations() == []


def test_alerts_are_listed_after_a_cursor_and_change_state(store: SqlLoopStore) -> None:
    a = store.add_alert(
        NewAlert("mon", "drift_share > 0.3", "warning", "42% drifted", "flights", 2)
    )
    b = store.add_alert(NewAlert("agent", "pipeline failed", "critical", "boom", payload={"n": 3}))
    assert a.state == "open"
    assert b.payload == {"n": 3}
    assert [x.id for x in store.list_alerts(since_id=a.id)] == [b.id]
    assert [x.id for x in store.list_alerts(source="mon")] == [a.id]
    assert store.set_alert_state(a.id, "acknowledged").state == "acknowledged"
    assert [x.id for x in store.list_alerts(state="open")] == [b.id]
    with pytest.raises(ValidationError, match="severity"):
        store.add_alert(NewAlert("mon", "r", "loud", "m"))
    with pytest.raises(ValidationError, match="state"):
        store.set_alert_state(a.id, "gone")
    with pytest.raises(NotFoundError, match="alert 999"):
        store.set_alert_state(999, "resolved")


def test_trigger_events_move_on_and_merge_detail(store: SqlLoopStore) -> None:
    ev = store.add_trigger_event(
        "nightly", "training", "schedule", "cron 0 2 * * *", detail={"a": 1}
    )
    moved = store.update_trigger_event(ev.id, status="running", run_id="r1", detail={"b": 2})
    assert (moved.status, moved.run_id, moved.detail) == ("running", "r1", {"a": 1, "b": 2})
    store.add_trigger_event("data", "training", "data", "cooldown", status="skipped")
    assert [e.trigger for e in store.list_trigger_events(status=["running"])] == ["nightly"]
    assert [e.id for e in store.list_trigger_events("nightly")] == [ev.id]
    with pytest.raises(ValidationError, match="status"):
        store.update_trigger_event(ev.id, status="exploded")
    with pytest.raises(NotFoundError):
        store.update_trigger_event(12345, status="failed")


def test_a_lease_is_held_by_one_holder_until_it_expires(store: SqlLoopStore) -> None:
    assert store.acquire_lease("trigger:nightly", "agent-a", ttl_s=0.3)
    assert not store.acquire_lease("trigger:nightly", "agent-b", ttl_s=10)
    assert store.acquire_lease("trigger:nightly", "agent-a", ttl_s=0.3)  # renewal
    lease = store.get_lease("trigger:nightly")
    assert lease is not None
    assert lease.holder == "agent-a"
    time.sleep(0.35)
    assert store.acquire_lease("trigger:nightly", "agent-b", ttl_s=10)
    store.release_lease("trigger:nightly", "agent-a")  # not the holder: no effect
    assert store.get_lease("trigger:nightly").holder == "agent-b"  # type: ignore[union-attr]
    store.release_lease("trigger:nightly", "agent-b")
    assert store.get_lease("trigger:nightly") is None
    with pytest.raises(ValidationError, match="ttl_s"):
        store.acquire_lease("x", "agent-a", ttl_s=0)


def test_racing_holders_get_the_lease_exactly_once(metadata_url: str) -> None:
    stores = [open_loop_store(metadata_url) for _ in range(2)]
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        if stores[i % 2].acquire_lease("trigger:race", f"agent-{i}", ttl_s=30):
            winners.append(f"agent-{i}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(winners) == 1
    assert stores[0].get_lease("trigger:race").holder == winners[0]  # type: ignore[union-attr]
    for s in stores:
        s.close()


def test_state_is_a_small_upserted_value(store: SqlLoopStore) -> None:
    assert store.get_state("watermark:flights") is None
    store.set_state("watermark:flights", "1000")
    store.set_state("watermark:flights", "2000")
    assert store.get_state("watermark:flights") == "2000"


def test_checks_are_grouped_by_version_and_attempt(store: SqlLoopStore) -> None:
    store.add_checks(
        [
            CheckRecord("flights", 3, "staging", "environment", True, "ok", {"mb": 80}, "a1"),
            CheckRecord("flights", 3, "staging", "load", False, "p99 90 ms > 50 ms", {}, "a1"),
        ]
    )
    store.add_checks([CheckRecord("flights", 4, "staging", "environment", True, "ok", {}, "a2")])
    checks = store.list_checks("flights", 3)
    assert [(c.name, c.passed) for c in checks] == [("environment", True), ("load", False)]
    assert checks[0].evidence == {"mb": 80}
    assert [c.version for c in store.list_checks("flights", attempt="a2")] == [4]


def test_traffic_is_replaced_and_validated(store: SqlLoopStore) -> None:
    assert store.get_traffic("flights", "production") is None
    store.set_traffic(Traffic("flights", "production", 5, 0.1, actor="agent", reason="canary"))
    store.set_traffic(Traffic("flights", "production", 5, 0.25, shadow_version=6))
    got = store.get_traffic("flights", "production")
    assert got is not None
    assert (got.canary_share, got.shadow_version) == (0.25, 6)
    with pytest.raises(ValidationError, match="canary_share"):
        store.set_traffic(Traffic("flights", "production", 5, 1.5))
    with pytest.raises(ValidationError, match="canary_version"):
        store.set_traffic(Traffic("flights", "production", None, 0.5))
    assert store.get_traffic("flights", "production").canary_share == 0.25  # type: ignore[union-attr]


def test_referenced_digests_name_reports_and_profiles_in_state(store: SqlLoopStore) -> None:
    report, profile = "a" * 64, "b" * 64
    store.add_evaluation(Evaluation("m1", "flights", 0, 10, "ok", report_sha256=report))
    store.add_evaluation(Evaluation("m1", "flights", 10, 20, "empty"))
    store.set_state("monitor:m1:serving:v1", f'{{"sha256": "{profile}", "until": 20}}')
    store.set_state("monitor:m1:window_end", "20")
    assert store.referenced_digests() == {report, profile}
