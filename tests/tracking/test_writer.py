import threading
import time

import pytest

from conveyor.core.entities import RunStatus
from conveyor.errors import StoreError
from conveyor.stores.metadata.base import NewRun
from conveyor.stores.metadata.sql.store import SqlMetadataStore
from conveyor.tracking.writer import BatchWriter


@pytest.fixture
def store(tmp_path):
    s = SqlMetadataStore(f"sqlite:///{tmp_path / 'w.db'}")
    yield s
    s.close()


def _run(store, run_id="a" * 32, start=None):
    exp = store.get_or_create_experiment("w")
    start = start if start is not None else int(time.time() * 1000)
    store.create_run(NewRun(id=run_id, experiment_id=exp.id, name="r", start_time=start))
    return run_id


def test_flush_makes_everything_durable(store):
    run_id = _run(store)
    writer = BatchWriter(store, interval=10)  # only flush() will commit
    for i in range(10_000):
        writer.add_metric((run_id, "loss", float(i), i, i))
    writer.add_params([(run_id, "lr", "0.1")])
    writer.flush()
    assert len(store.metric_history(run_id, "loss")) == 10_000
    assert store.get_run(run_id).params == {"lr": "0.1"}
    writer.close()


def test_interval_commits_without_flush(store):
    run_id = _run(store)
    writer = BatchWriter(store, interval=0.05)
    writer.track(run_id)
    writer.add_metric((run_id, "m", 1.0, 0, 1))
    deadline = time.monotonic() + 5
    while not store.metric_history(run_id, "m") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(store.metric_history(run_id, "m")) == 1
    writer.close()


def test_back_pressure_bounds_the_buffer(store):
    run_id = _run(store)
    writer = BatchWriter(store, interval=10, batch_size=100, max_pending=1000)
    seen = []

    for i in range(20_000):
        writer.add_metric((run_id, "m", float(i), i, i))
        seen.append(len(writer._batch.metrics))
    assert max(seen) <= 1000
    writer.flush()
    assert len(store.metric_history(run_id, "m")) == 20_000


def test_heartbeats_and_end(store):
    run_id = _run(store, start=1)
    writer = BatchWriter(store, heartbeat_seconds=0.05)
    writer.track(run_id)
    deadline = time.monotonic() + 5
    while store.get_run(run_id).heartbeat_at == 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get_run(run_id).heartbeat_at > 1
    writer.end(run_id, RunStatus.FINISHED, 5)
    writer.flush()
    assert store.get_run(run_id).status is RunStatus.FINISHED
    writer.close()


def test_commit_error_surfaces_at_flush_and_writer_goes_on(store):
    run_id = _run(store)
    writer = BatchWriter(store, interval=10)
    writer.add_metric(("0" * 32, "m", 1.0, 0, 1))  # no such run: the foreign key refuses it
    with pytest.raises(StoreError, match="could not commit"):
        writer.flush()
    writer.add_metric((run_id, "m", 2.0, 0, 1))
    writer.flush()
    assert [m.value for m in store.metric_history(run_id, "m")] == [2.0]


def test_many_threads_logging(store):
    run_id = _run(store)
    writer = BatchWriter(store, interval=0.01, batch_size=500)

    def log(t: int) -> None:
        for i in range(2_000):
            writer.add_metric((run_id, f"t{t}", float(i), i, i))

    threads = [threading.Thread(target=log, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    writer.flush()
    for t in range(4):
        steps = [m.step for m in store.metric_history(run_id, f"t{t}")]
        assert steps == list(range(2_000))


def test_idle_writer_does_not_spin(store):
    writer = BatchWriter(store)
    writer.add_params([])
    time.sleep(0.1)
    cpu = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - cpu < 0.05  # the whole process: the writer thread included
    writer.close()


def test_new_runs_are_written_before_what_refers_to_them(store):
    from conveyor.stores.metadata.base import NewRun

    exp = store.get_or_create_experiment("w")
    writer = BatchWriter(store, interval=10)
    run = NewRun(id="c" * 32, experiment_id=exp.id, name="late", start_time=1)
    writer.create(run)
    writer.add_metric((run.id, "m", 1.0, 0, 1))
    writer.end(run.id, RunStatus.FINISHED, 2)
    writer.flush()
    got = store.get_run(run.id)
    assert (got.status, got.metrics) == (RunStatus.FINISHED, {"m": 1.0})
