import threading

from conveyor.runtime.context import current_step_run, step_run


class _Run:
    id = "r1"


def test_step_run_is_set_inside_and_reset_after():
    assert current_step_run() is None
    run = _Run()
    with step_run(run):  # type: ignore[arg-type]
        assert current_step_run() is run
    assert current_step_run() is None


def test_each_thread_sees_its_own_step_run():
    seen = []
    with step_run(_Run()):  # type: ignore[arg-type]
        thread = threading.Thread(target=lambda: seen.append(current_step_run()))
        thread.start()
        thread.join()
    assert seen == [None]
