import logging
import threading
import time

import numpy as np
import pandas as pd
import pytest

from conveyor.core.entities import RunStatus
from conveyor.core.pipeline import pipeline
from conveyor.core.step import step
from conveyor.errors import PipelineDefinitionError, ValidationError
from conveyor.runtime.executors.local import LocalExecutor
from conveyor.runtime.runner import run_pipeline

calls: list[str] = []


@pytest.fixture(autouse=True)
def _reset_calls():
    calls.clear()


@step
def first(start: int = 0) -> int:
    calls.append("first")
    print(f"first starts at {start}")
    return start


@step
def inc(x: int, by: int = 1) -> int:
    calls.append("inc")
    logging.getLogger("conveyor.test").warning("incrementing %s", x)
    return x + by


@pipeline
def chain(start: int = 0, by: int = 1):
    x = first(start)
    x = inc(x, by=by)
    inc(x)


def test_a_chain_runs_as_a_parent_run_with_child_runs(tracker):
    result = run_pipeline(chain, {"start": 5}, tracker=tracker)
    assert result.status is RunStatus.FINISHED
    assert result.outputs == {"inc_2": 7}
    assert list(result.steps) == ["first", "inc", "inc_2"]
    assert result.steps["inc"].output == 6
    assert result.steps["inc"].outputs == {"output": 6}
    assert not any(s.cached for s in result.steps.values())
    parent = tracker.get_run(result.run_id)
    assert parent.status is RunStatus.FINISHED
    assert parent.params == {"start": "5", "by": "1"}
    assert parent.tags["conveyor.kind"] == "pipeline"
    assert tracker.runs.get_experiment("chain").id == parent.experiment_id
    child = tracker.get_run(result.steps["inc"].run_id)
    assert child.parent_run_id == result.run_id
    assert child.status is RunStatus.FINISHED
    assert child.params == {"by": "1"}
    assert child.tags["conveyor.step"] == "inc"
    assert child.tags["conveyor.pipeline"] == "chain"
    assert len(child.tags["conveyor.cache_key"]) == 64
    assert child.metrics["duration_s"] >= 0
    assert {a.path for a in child.artifacts} == {"outputs/output.json", "logs/step.log"}


def test_logs_are_captured_per_step(tracker, capsys):
    result = run_pipeline(chain, tracker=tracker)
    logs = {name: _log(tracker, s.run_id) for name, s in result.steps.items()}
    assert "first starts at 0" in logs["first"]
    assert "incrementing" not in logs["first"]
    assert "WARNING conveyor.test: incrementing 0" in logs["inc"]
    assert "incrementing 1" in logs["inc_2"]
    assert "first starts at 0" in capsys.readouterr().out  # still shown as it runs


def test_lineage_links_outputs_to_inputs(tracker):
    result = run_pipeline(chain, tracker=tracker)
    first_out = result.steps["first"].digests["output"].sha256
    edges = tracker.runs.lineage_of_run(result.steps["inc"].run_id)
    assert ("input", first_out, "first.output") in {(e.direction, e.sha256, e.name) for e in edges}
    producers = tracker.runs.lineage_of_artifact(first_out)
    assert {(e.run_id, e.direction) for e in producers} >= {
        (result.steps["first"].run_id, "output"),
        (result.steps["inc"].run_id, "input"),
    }


def test_rerun_is_fully_cached_and_loads_nothing(tracker):
    run_pipeline(chain, tracker=tracker)
    calls.clear()
    again = run_pipeline(chain, tracker=tracker)
    assert calls == []
    assert all(s.cached for s in again.steps.values())
    assert not any(v.loaded for s in again.steps.values() for v in s.values.values())
    assert again.outputs == {"inc_2": 2}  # read from the artifact store on demand
    cached = tracker.get_run(again.steps["inc"].run_id)
    assert cached.tags["conveyor.cached"] == "true"
    assert cached.tags["conveyor.cached_from"]
    assert {a.path for a in cached.artifacts} == {"outputs/output.json"}


def test_a_changed_parameter_reruns_only_what_it_changes(tracker):
    run_pipeline(chain, {"by": 1}, tracker=tracker)
    calls.clear()
    result = run_pipeline(chain, {"by": 2}, tracker=tracker)
    assert [s.cached for s in result.steps.values()] == [True, False, False]
    assert result.outputs == {"inc_2": 3}


def test_changed_input_content_misses_and_equal_content_hits(tracker):
    run_pipeline(chain, {"start": 1}, tracker=tracker)
    changed = run_pipeline(chain, {"start": 2}, tracker=tracker)
    # inc(2) ran before, as inc_2 of the first run: same code, input and parameters.
    assert [s.cached for s in changed.steps.values()] == [False, True, False]

    @step(name="first")
    def other_first(start: int = 0) -> int:
        return 1  # other code, same output as start=1 gave

    @pipeline(name="chain")
    def chain2(start: int = 0):
        inc(inc(other_first(start)))

    result = run_pipeline(chain2, tracker=tracker)
    assert [s.cached for s in result.steps.values()] == [False, True, True]


def test_changed_code_misses(tracker):
    def make(delta):
        if delta == 1:

            @step(name="bump")
            def bump(x: int) -> int:
                return x + 1

        else:

            @step(name="bump")
            def bump(x: int) -> int:
                return x + 2

        @pipeline(name="p")
        def p():
            bump(first())

        return p

    run_pipeline(make(1), tracker=tracker)
    same = run_pipeline(make(1), tracker=tracker)
    assert same.steps["bump"].cached
    other = run_pipeline(make(2), tracker=tracker)
    assert other.steps["first"].cached
    assert not other.steps["bump"].cached
    assert other.outputs == {"bump": 2}


def test_cache_off_for_the_run_or_one_step(tracker):
    run_pipeline(chain, tracker=tracker)
    calls.clear()
    result = run_pipeline(chain, tracker=tracker, cache=False)
    assert calls == ["first", "inc", "inc"]
    assert not any(s.cached for s in result.steps.values())

    @step(cache=False)
    def always(x: int) -> int:
        calls.append("always")
        return x

    @pipeline
    def p():
        always(first())

    run_pipeline(p, tracker=tracker)
    calls.clear()
    again = run_pipeline(p, tracker=tracker)
    assert calls == ["always"]
    assert again.steps["first"].cached


attempts: dict[str, int] = {}


@step
def flaky_load() -> int:
    return 10


@step
def explode(x: int) -> int:
    if attempts.get("broken", True):
        raise ValueError(f"bad value {x}")
    return x * 2


@step
def after(x: int) -> int:
    calls.append("after")
    return x


@pipeline
def fragile():
    after(explode(flaky_load()))


def test_a_failing_step_stops_the_pipeline_cleanly_and_the_rerun_resumes(tracker):
    attempts["broken"] = True
    result = run_pipeline(fragile, tracker=tracker)
    assert result.status is RunStatus.FAILED
    assert isinstance(result.steps["explode"].error, ValueError)
    assert isinstance(result.error, ValueError)
    assert result.not_started == ["after"]
    assert "after" not in result.steps
    assert calls == []
    failed = tracker.get_run(result.steps["explode"].run_id)
    assert failed.status is RunStatus.FAILED
    assert failed.tags["conveyor.error"] == "ValueError: bad value 10"
    assert "Traceback" in _log(tracker, failed.id)
    assert "raise ValueError" in _log(tracker, failed.id)
    ok = tracker.get_run(result.steps["flaky_load"].run_id)
    assert ok.status is RunStatus.FINISHED
    assert "outputs/output.json" in {a.path for a in ok.artifacts}
    parent = tracker.get_run(result.run_id)
    assert parent.status is RunStatus.FAILED
    assert "step 'explode' failed: ValueError" in parent.tags["conveyor.error"]

    attempts["broken"] = False
    again = run_pipeline(fragile, tracker=tracker)
    assert again.status is RunStatus.FINISHED
    assert again.steps["flaky_load"].cached
    assert not again.steps["explode"].cached
    assert again.outputs == {"after": 20}


def test_resume_reuses_finished_steps_even_without_cache(tracker):
    attempts["broken"] = True
    failed = run_pipeline(fragile, tracker=tracker)
    attempts["broken"] = False
    resumed = run_pipeline(fragile, tracker=tracker, cache=False, resume=failed.run_id)
    assert resumed.steps["flaky_load"].cached
    assert not resumed.steps["explode"].cached
    assert tracker.get_run(resumed.run_id).tags["conveyor.resumed_from"] == failed.run_id
    plain = run_pipeline(fragile, tracker=tracker, cache=False)
    assert not plain.steps["flaky_load"].cached
    with pytest.raises(ValidationError, match="not a run of pipeline 'chain'"):
        run_pipeline(chain, tracker=tracker, resume=failed.run_id)


def test_retries_rerun_a_failing_step(tracker):
    tries = []

    @step(retries=2, retry_delay=0.01)
    def sometimes() -> int:
        tries.append(time.monotonic())
        if len(tries) < 3:
            raise ConnectionError(f"try {len(tries)}")
        return len(tries)

    @pipeline
    def p():
        sometimes()

    result = run_pipeline(p, tracker=tracker)
    assert result.status is RunStatus.FINISHED
    assert result.steps["sometimes"].attempts == 3
    assert result.outputs == {"sometimes": 3}
    assert tries[2] - tries[0] >= 0.02
    log = _log(tracker, result.steps["sometimes"].run_id)
    assert "attempt 1 of 3 failed" in log
    assert "ConnectionError: try 2" in log
    tries.clear()
    tries.extend([0.0, 0.0, 0.0, 0.0])  # from now on every try fails: 1 + 2 retries

    @step(retries=1)
    def never() -> int:
        raise RuntimeError("no")

    @pipeline
    def q():
        never()

    failed = run_pipeline(q, tracker=tracker)
    assert failed.steps["never"].attempts == 2
    assert tracker.get_run(failed.steps["never"].run_id).tags["conveyor.attempts"] == "2"


def test_independent_branches_overlap(tracker):
    spans: dict[str, tuple[float, float]] = {}

    @step(cache=False)
    def slow(tag: str) -> str:
        start = time.perf_counter()
        print(f"branch {tag} on {threading.current_thread().name}")
        time.sleep(0.3)
        spans[tag] = (start, time.perf_counter())
        return tag

    @step
    def join(a: str, b: str) -> str:
        return a + b

    @pipeline
    def branches():
        join(slow("a"), slow("b"))

    result = run_pipeline(branches, tracker=tracker, executor=LocalExecutor(max_workers=2))
    assert result.outputs == {"join": "ab"}
    (a0, a1), (b0, b1) = spans["a"], spans["b"]
    assert a0 < b1
    assert b0 < a1
    log_a = _log(tracker, result.steps["slow"].run_id)
    log_b = _log(tracker, result.steps["slow_2"].run_id)
    assert "branch a" in log_a
    assert "branch b" not in log_a
    assert "branch b" in log_b
    assert "branch a" not in log_b
    runs = {
        r.name: r
        for r in tracker.search_runs(filter=f"attributes.parent_run_id = '{result.run_id}'")
    }
    assert runs["slow"].start_time < runs["slow_2"].end_time
    assert runs["slow_2"].start_time < runs["slow"].end_time


def test_multiple_outputs_and_dataframes_pass_as_objects(tracker):
    seen = {}

    @step
    def split(n: int) -> tuple[pd.DataFrame, np.ndarray]:
        frame = pd.DataFrame({"x": np.arange(n, dtype=float)})
        return frame, frame["x"].to_numpy() * 2

    @step
    def use(frame: pd.DataFrame, doubled: np.ndarray) -> float:
        seen["frame"] = frame
        return float(frame["x"].sum() + doubled.sum())

    @pipeline
    def p():
        frame, doubled = split(4)
        use(frame, doubled)

    result = run_pipeline(p, tracker=tracker)
    assert result.outputs == {"use": 18.0}
    assert seen["frame"] is result.steps["split"].outputs["output_0"]
    paths = {a.path for a in tracker.get_run(result.steps["split"].run_id).artifacts}
    assert {"outputs/output_0.parquet", "outputs/output_1.npy"} <= paths


def test_an_unchanged_object_passed_on_reuses_its_artifact(tracker):
    @step
    def make() -> pd.DataFrame:
        return pd.DataFrame({"x": np.arange(1000, dtype=float)})

    @step
    def same(df: pd.DataFrame) -> pd.DataFrame:
        return df

    @step
    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        df.iloc[0, 0] = -1.0
        return df

    @pipeline
    def p():
        mutate(same(make()))

    result = run_pipeline(p, tracker=tracker, cache=False)
    digest = {n: s.digests["output"].sha256 for n, s in result.steps.items()}
    assert digest["same"] == digest["make"]
    assert digest["mutate"] != digest["make"]
    assert result.outputs["mutate"]["x"].iloc[0] == -1.0


def test_unsupported_output_types(tracker):
    class Model:
        pass

    @step
    def fit() -> Model:
        return Model()

    @pipeline
    def annotated():
        fit()

    with pytest.raises(ValidationError, match="step 'fit' output 'output': no serializer for"):
        run_pipeline(annotated, tracker=tracker)
    assert tracker.search_runs() == []  # refused before anything ran

    @step
    def hostile(x: int):
        return Model()

    @pipeline
    def unannotated():
        hostile(first())

    result = run_pipeline(unannotated, tracker=tracker)
    assert result.status is RunStatus.FAILED
    error = result.steps["hostile"].error
    assert isinstance(error, ValidationError)
    assert "step 'hostile' output 'output'" in str(error)
    assert "Model" in str(error)
    assert result.steps["first"].status is RunStatus.FINISHED


class Model:
    def __init__(self, depth):
        self.depth = depth


def test_pickle_only_when_the_step_opts_in(tracker):
    @step(allow_pickle=True)
    def fit(depth: int) -> Model:
        return Model(depth)

    @step
    def depth_of(model: Model) -> int:
        return model.depth

    @pipeline
    def p(depth: int = 3):
        depth_of(fit(depth))

    first_run = run_pipeline(p, tracker=tracker)
    assert first_run.outputs == {"depth_of": 3}
    assert first_run.steps["fit"].digests["output"].serializer == "pickle"
    again = run_pipeline(p, tracker=tracker)
    assert again.steps["fit"].cached
    assert again.steps["fit"].output.depth == 3  # read back, hash-verified by the store


def test_definition_errors_come_before_any_run(tracker):
    with pytest.raises(PipelineDefinitionError, match="no such parameter"):
        run_pipeline(chain, {"nope": 1}, tracker=tracker)
    with pytest.raises(PipelineDefinitionError, match="expects int"):
        run_pipeline(chain, {"start": "x"}, tracker=tracker)
    assert tracker.search_runs() == []
    with pytest.raises(ValidationError, match="tracker"):
        run_pipeline(chain)


def test_steps_called_outside_a_pipeline_store_nothing(tracker):
    assert inc(first(3), by=2) == 5
    assert tracker.search_runs() == []


def test_progress_events_in_order(tracker):
    events = []
    run_pipeline(chain, tracker=tracker, on_event=lambda e: events.append((e.name, e.kind)))
    assert events == [
        ("first", "started"),
        ("first", "ended"),
        ("inc", "started"),
        ("inc", "ended"),
        ("inc_2", "started"),
        ("inc_2", "ended"),
    ]


def test_only_in_process_executors(tracker):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1) as pool, pytest.raises(ValidationError, match="in-process"):
        run_pipeline(chain, tracker=tracker, executor=pool)  # type: ignore[arg-type]


def test_a_given_executor_is_left_running(tracker):
    with LocalExecutor(max_workers=1) as executor:
        run_pipeline(chain, tracker=tracker, executor=executor)
        run_pipeline(chain, tracker=tracker, executor=executor, experiment="other")
    assert len(tracker.search_runs("other")) == 4


def _log(tracker, run_id: str) -> str:
    record = tracker.runs.get_artifact(run_id, "logs/step.log")
    return tracker.artifacts.get_bytes(record.sha256).decode()


def test_code_inside_a_step_sees_the_step_run(tmp_path):
    import conveyor
    from conveyor.core.pipeline import pipeline as make_pipeline
    from conveyor.core.step import step as make_step
    from conveyor.runtime.context import current_step_run
    from conveyor.runtime.runner import run_pipeline as run
    from conveyor.stores.backends import open_artifact_store, open_metadata_store
    from conveyor.tracking.tracker import Tracker

    tracker = Tracker(
        open_metadata_store(f"sqlite:///{tmp_path}/c.db"), open_artifact_store(str(tmp_path / "a"))
    )

    @make_step
    def inner() -> str:
        conveyor.log_metric("inside", 1.0)  # the top-level API logs to the step's run
        return current_step_run().id

    @make_pipeline
    def outer():
        inner()

    result = run(outer, tracker=tracker, cache=False)
    step_run_id = result.outputs["inner"]
    assert step_run_id == result.steps["inner"].run_id
    assert tracker.get_run(step_run_id).metrics["inside"] == 1.0
    assert current_step_run() is None
