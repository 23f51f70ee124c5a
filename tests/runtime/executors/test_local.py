import threading
import time

import pytest

from conveyor.errors import StateError, ValidationError
from conveyor.runtime.executors.base import Executor
from conveyor.runtime.executors.local import LocalExecutor


def test_it_is_an_executor_with_futures():
    with LocalExecutor(max_workers=2) as executor:
        assert isinstance(executor, Executor)
        assert executor.in_process
        assert executor.submit(pow, 2, exp=10).result() == 1024


def test_calls_run_in_parallel_threads():
    barrier = threading.Barrier(2, timeout=5)
    with LocalExecutor(max_workers=2) as executor:
        futures = [executor.submit(barrier.wait) for _ in range(2)]
        assert sorted(f.result() for f in futures) == [0, 1]  # both waited together


def test_exceptions_travel_in_the_future():
    with LocalExecutor(max_workers=1) as executor:
        future = executor.submit(int, "x")
        with pytest.raises(ValueError, match="invalid literal"):
            future.result()


def test_shutdown_waits_and_refuses_new_work():
    executor = LocalExecutor(max_workers=1)
    future = executor.submit(time.sleep, 0.05)
    executor.shutdown()
    assert future.done()
    with pytest.raises(StateError, match="shut down"):
        executor.submit(print)


def test_worker_count():
    assert LocalExecutor().max_workers >= 1
    with pytest.raises(ValidationError, match="max_workers"):
        LocalExecutor(max_workers=0)
