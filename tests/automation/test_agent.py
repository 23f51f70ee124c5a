"""The agent: firing, leases across processes, kills mid-run, retries and alerts, limits."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.automation.agent import Agent, RunOutcome, request_run
from conveyor.automation.triggers import parse_triggers
from conveyor.core.loop import NewAlert
from conveyor.errors import NotFoundError, StateError, ValidationError
from conveyor.stores.backends import open_loop_store

PIPE = "tests.pipelines:tiny"


def data_trigger(folder, **more):
    spec = {"name": "new-data", "pipeline": PIPE, "data": {"path": str(folder / "m-*.parquet")}}
    return parse_triggers([{**spec, **more}])[0]


class Recorder:
    """A pipeline stand-in: records its calls; fails the first ``fail`` of them."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[dict] = []
        self.fail = fail

    def __call__(self, trigger, params):
        self.calls.append(params)
        if len(self.calls) <= self.fail:
            raise RuntimeError(f"boom {len(self.calls)}")
        return f"run{len(self.calls)}"


def test_new_data_runs_once_links_the_run_and_moves_the_watermark(store, data):
    trigger = data_trigger(data, params={"n": 3})
    runs = Recorder()
    seen = []
    agent = Agent([trigger], loop_store=store, run_pipeline=runs, on_event=seen.append)
    [event] = agent.run_once()
    assert (event.status, event.run_id, event.kind) == ("succeeded", "run1", "data")
    assert event.reason == "1 new file: m-01.parquet"
    assert event.detail["holder"] == agent.holder
    assert runs.calls == [{"n": 3}]
    assert store.get_state(trigger.watermark_key) is not None
    assert [e.status for e in seen] == ["running", "succeeded"]
    assert agent.run_once() == []  # nothing new
    assert store.get_lease(trigger.lease_name) is None  # given back after the run
    (data / "m-02.parquet").write_bytes(b"x")
    [again] = agent.run_once()
    assert again.reason == "1 new file: m-02.parquet"
    assert len(runs.calls) == 2


def test_a_failing_pipeline_is_retried_with_backoff_then_alerts(store, data):
    trigger = data_trigger(data, attempts=3, backoff=0.05)
    runs = Recorder(fail=5)
    agent = Agent([trigger], loop_store=store, run_pipeline=runs)
    started = time.perf_counter()
    [event] = agent.run_once()
    took = time.perf_counter() - started
    assert len(runs.calls) == 3
    assert took >= 0.05 + 0.1  # waits of 0.05 s then 0.1 s
    assert event.status == "failed"
    assert [a["error"] for a in event.detail["attempts"]] == [
        "RuntimeError: boom 1",
        "RuntimeError: boom 2",
        "RuntimeError: boom 3",
    ]
    assert store.get_state(trigger.watermark_key) is None  # still due
    [alert] = store.list_alerts(source="agent")
    assert alert.rule == "pipeline_failed"
    assert alert.severity == "critical"
    assert "failed 3 time(s); last error: RuntimeError: boom 3" in alert.message
    assert alert.payload["event_id"] == event.id
    # the data is still new: the next pass tries again, and succeeds on the sixth call
    runs.fail = 3
    [retried] = agent.run_once()
    assert retried.status == "succeeded"
    assert retried.run_id == "run4"


def test_a_retry_that_succeeds_raises_no_alert(store, data):
    agent = Agent(
        [data_trigger(data, attempts=2, backoff=0)], loop_store=store, run_pipeline=Recorder(1)
    )
    [event] = agent.run_once()
    assert event.status == "succeeded"
    assert len(event.detail["attempts"]) == 2
    assert store.list_alerts(source="agent") == []


def test_cooldown_records_one_skipped_event_with_the_reason(store, data):
    trigger = data_trigger(data, cooldown="10m")
    runs = Recorder()
    agent = Agent([trigger], loop_store=store, run_pipeline=runs)
    [first] = agent.run_once()
    (data / "m-02.parquet").write_bytes(b"x")
    [skipped] = agent.run_once()
    assert skipped.status == "skipped"
    assert skipped.detail["skip"] == "cooldown"
    assert skipped.detail["why"] == f"cooldown 10m: the last run started 0s ago (event {first.id})"
    assert skipped.reason == "1 new file: m-02.parquet"
    assert agent.run_once() == []  # said once: not a new event each pass
    assert len(runs.calls) == 1
    assert [e.status for e in store.list_trigger_events("new-data")] == ["succeeded", "skipped"]


def test_the_concurrency_limit_counts_runs_of_the_pipeline_across_triggers(store, data):
    release = threading.Event()
    entered = threading.Event()

    def slow(trigger, params):
        entered.set()
        release.wait(10)
        return "slow-run"

    nightly = parse_triggers([{"name": "nightly", "pipeline": PIPE, "schedule": "* * * * *"}])[0]
    busy = Agent([nightly], loop_store=store, run_pipeline=slow, holder="a")
    store.set_state(nightly.watermark_key, "2020-01-01T00:00:00Z")
    thread = threading.Thread(target=busy.run_once)
    thread.start()
    try:
        assert entered.wait(5)
        other = Agent([data_trigger(data)], loop_store=store, run_pipeline=Recorder(), holder="b")
        [skipped] = other.run_once()
        assert skipped.status == "skipped"
        assert skipped.detail["skip"] == "concurrency"
        running = store.list_trigger_events("nightly")[0]
        assert skipped.detail["why"] == (
            f"concurrency limit 1: {PIPE} is already running (event {running.id} (nightly))"
        )
    finally:
        release.set()
        thread.join()
    [ran] = other.run_once()
    assert ran.status == "succeeded"


def test_manual_requests_run_on_the_next_pass_with_their_params(store, data):
    trigger = parse_triggers([{"name": "by-hand", "pipeline": PIPE, "params": {"n": 1}}])[0]
    runs = Recorder()
    agent = Agent([trigger], loop_store=store, run_pipeline=runs)
    pending = request_run(store, trigger, "labels fixed", params={"n": 2}, by="ana")
    assert pending.status == "pending"
    assert pending.kind == "manual"
    [event] = agent.run_once()
    assert (event.id, event.status, event.reason) == (pending.id, "succeeded", "labels fixed")
    assert runs.calls == [{"n": 2}]
    assert agent.run_once() == []
    now = agent.run_now("by-hand", "again, now")
    assert now.status == "succeeded"
    assert runs.calls[-1] == {"n": 1}
    with pytest.raises(ValidationError, match="reason"):
        request_run(store, trigger, "  ")
    with pytest.raises(NotFoundError, match=r"declared: by-hand"):
        agent.run_now("nope", "why")


def test_run_now_refuses_while_another_agent_holds_the_trigger(store):
    trigger = parse_triggers([{"name": "by-hand", "pipeline": PIPE}])[0]
    store.acquire_lease(trigger.lease_name, "someone-else", 30)
    agent = Agent([trigger], loop_store=store, run_pipeline=Recorder())
    with pytest.raises(StateError, match="someone-else holds it"):
        agent.run_now("by-hand", "urgent")
    assert [e.status for e in store.list_trigger_events("by-hand")] == ["pending"]


def test_mark_seen_moves_the_watermark_without_a_run(store, data):
    trigger = data_trigger(data)
    runs = Recorder()
    agent = Agent([trigger], loop_store=store, run_pipeline=runs)
    event = agent.mark_seen("new-data", "trained on January by hand")
    assert event is not None
    assert (event.status, event.reason) == ("skipped", "1 new file: m-01.parquet")
    assert event.detail["why"] == "trained on January by hand"
    assert agent.mark_seen("new-data", "again") is None
    assert agent.run_once() == []
    (data / "m-02.parquet").write_bytes(b"x")
    [ran] = agent.run_once()
    assert ran.reason == "1 new file: m-02.parquet"
    assert len(runs.calls) == 1
    store.acquire_lease(trigger.lease_name, "other", 30)
    with pytest.raises(StateError, match="busy"):
        agent.mark_seen("new-data", "x")


def test_a_pending_event_of_an_undeclared_trigger_is_skipped_with_why(store):
    store.add_trigger_event("gone", PIPE, "manual", "old request")
    [event] = Agent([], loop_store=store, run_pipeline=Recorder()).run_once()
    assert event.status == "skipped"
    assert event.detail["why"] == "no trigger 'gone' is declared"


def test_an_alert_asking_for_retraining_fires_once(store):
    trigger = parse_triggers(
        [{"name": "on-drift", "pipeline": PIPE, "alert": {"monitor": "flights-production"}}]
    )[0]
    runs = Recorder()
    agent = Agent([trigger], loop_store=store, run_pipeline=runs)
    assert agent.run_once() == []
    alert = store.add_alert(
        NewAlert(
            "flights-production",
            "drift",
            "warning",
            "drift share 0.42 > 0.3",
            payload={"retrain": {"pipeline": "tiny"}},
        )
    )
    [event] = agent.run_once()
    assert event.reason == f"alert {alert.id}: drift share 0.42 > 0.3"
    assert event.detail["alerts"] == [alert.id]
    assert agent.run_once() == []


def test_a_schedule_fires_at_its_minute_not_for_the_past(store):
    trigger = parse_triggers([{"name": "nightly", "pipeline": PIPE, "schedule": "0 2 * * *"}])[0]
    runs = Recorder()
    agent = Agent([trigger], loop_store=store, run_pipeline=runs)
    assert agent.run_once(datetime(2026, 3, 1, 1, 0, tzinfo=UTC)) == []
    assert agent.run_once(datetime(2026, 3, 1, 1, 59, tzinfo=UTC)) == []
    [event] = agent.run_once(datetime(2026, 3, 1, 2, 0, 5, tzinfo=UTC))
    assert event.reason == "cron 0 2 * * * at 2026-03-01T02:00:00Z"
    assert agent.run_once(datetime(2026, 3, 1, 2, 30, tzinfo=UTC)) == []


def test_new_versions_go_to_the_delivery_hook_and_its_failure_alerts(store, data):
    delivered = []

    def deliver(ref, trigger):
        delivered.append(ref)
        if ref.endswith("/2"):
            raise ValidationError("checks", "load: p99 too slow")
        return f"{ref} -> staging"

    def registers(trigger, params):
        return RunOutcome("r1", versions=("flights/1", "flights/2"))

    agent = Agent(
        [data_trigger(data)], loop_store=store, run_pipeline=registers, on_new_version=deliver
    )
    [event] = agent.run_once()
    assert event.status == "succeeded"
    assert event.detail["delivery"] == {
        "flights/1": "flights/1 -> staging",
        "flights/2": "failed: ValidationError: checks: load: p99 too slow",
    }
    [alert] = store.list_alerts(source="agent")
    assert alert.rule == "delivery_failed"


def test_a_failed_outcome_records_its_run_and_hands_nothing_on(store, data):
    delivered = []
    agent = Agent(
        [data_trigger(data, attempts=1)],
        loop_store=store,
        run_pipeline=lambda t, p: RunOutcome("r9", False, "step 'fit' failed", ("m/1",)),
        on_new_version=lambda ref, t: delivered.append(ref),
    )
    [event] = agent.run_once()
    assert (event.status, event.run_id) == ("failed", "r9")
    assert delivered == []


# --- several processes on one store ---------------------------------------------------------

AGENT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from conveyor.automation import Agent, parse_triggers
    from conveyor.stores.backends import open_loop_store

    url, folder, go = sys.argv[1], Path(sys.argv[2]), sys.argv[5]
    ttl, hold = float(sys.argv[3]), float(sys.argv[4])
    trigger = parse_triggers(
        [{"name": "new-data", "pipeline": "x.py:x", "data": {"path": str(folder / "m-*.parquet")}}]
    )[0]
    store = open_loop_store(url)

    def run(trigger, params):
        with open(folder / "started.txt", "a") as f:
            f.write("x\\n")
        time.sleep(hold)
        with open(folder / "finished.txt", "a") as f:
            f.write("x\\n")
        return "run"

    agent = Agent([trigger], loop_store=store, run_pipeline=run, lease_ttl_s=ttl)
    Path(f"{go}.ready-{agent.holder.replace(':', '-')}").touch()
    while not Path(go).exists():
        time.sleep(0.01)
    print(len(agent.run_once()), flush=True)
    """
)


def _agent_process(tmp_path, url, data, ttl, hold, go):
    script = tmp_path / "agent_script.py"
    script.write_text(AGENT_SCRIPT)
    args = [sys.executable, str(script), url, str(data), str(ttl), str(hold), str(go)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_two_agent_processes_on_one_store_run_a_trigger_once(tmp_path, data, backend, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    open_loop_store(url).close()  # migrate once, before the race
    go = tmp_path / "go"
    procs = [_agent_process(tmp_path, url, data, 10, 0.3, go) for _ in range(2)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.ready-*"))) < 2:  # both imported and connected: race
        assert time.monotonic() < deadline
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.write_text("")
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert sorted(o[0].strip() for o in outs) == ["0", "1"]
    assert _lines(data / "finished.txt") == 1
    store = open_loop_store(url)
    assert [e.status for e in store.list_trigger_events("new-data")] == ["succeeded"]
    store.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_killed_agent_leaves_one_run_and_a_new_agent_takes_over_after_its_lease(
    tmp_path, data, backend, request
):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    open_loop_store(url).close()
    go = tmp_path / "go"
    go.write_text("")
    victim = _agent_process(tmp_path, url, data, 1.0, 60, go)
    deadline = time.monotonic() + 30
    while _lines(data / "started.txt") == 0:
        assert time.monotonic() < deadline, victim.stderr.read() if victim.poll() else "slow"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    store = open_loop_store(url)
    [orphan] = store.list_trigger_events("new-data")
    assert orphan.status == "running"

    trigger = data_trigger(data)
    runs = Recorder()
    heir = Agent([trigger], loop_store=store, run_pipeline=runs, lease_ttl_s=1.0, holder="heir")
    assert heir.run_once() == []  # the victim's lease is still live: no second run
    assert runs.calls == []
    time.sleep(1.1)
    acted = heir.run_once()
    assert [(e.id, e.status) for e in acted] == [
        (orphan.id, "failed"),
        (orphan.id + 1, "succeeded"),
    ]
    assert "stopped during the run (its lease expired)" in acted[0].detail["abandoned"]
    assert len(runs.calls) == 1
    assert heir.run_once() == []
    assert _lines(data / "finished.txt") == 0  # the killed run never finished
    store.close()


def test_a_long_run_keeps_its_lease_alive(store, data):
    trigger = data_trigger(data)
    leases = []

    def long_run(trigger, params):
        time.sleep(0.35)
        leases.append(store.get_lease(trigger.lease_name))
        return "r"

    agent = Agent([trigger], loop_store=store, run_pipeline=long_run, lease_ttl_s=0.15)
    [event] = agent.run_once()
    assert event.status == "succeeded"
    [lease] = leases
    assert lease is not None
    assert lease.holder == agent.holder
    assert lease.expires_at > time.time() * 1000  # renewed after the first 0.15 s
