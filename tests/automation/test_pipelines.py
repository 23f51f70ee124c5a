"""`PipelineRunner`: a real ``@pipeline`` run for the agent, and the versions it registered."""

from conveyor.automation.agent import Agent
from conveyor.automation.pipelines import PipelineRunner
from conveyor.automation.triggers import parse_triggers
from conveyor.core.entities import RunStatus
from conveyor.core.pipeline import pipeline
from conveyor.core.step import step


def data_trigger(folder, **more):
    spec = {
        "name": "new-data",
        "pipeline": "x.py:tiny",
        "data": {"path": str(folder / "m-*.parquet")},
    }
    return parse_triggers([{**spec, **more}])[0]


@step
def count(n: int) -> int:
    if n < 0:
        raise ValueError("n must not be negative")
    return n


class Constant:
    """A model that always answers 0 (registered as a trusted pickle: no heavy imports)."""

    def predict(self, rows):
        import numpy as np

        return np.zeros(len(rows))


@step
def register(n: int) -> int:
    import numpy as np

    from conveyor.runtime.context import current_step_run

    run = current_step_run()
    assert run is not None
    registry = _REGISTRY[0]
    return registry.register_model(
        "tiny", Constant(), np.zeros((2, 1)), trusted=True, run_id=run.id
    ).version


@pipeline
def tiny(n: int = 1):
    register(count(n))


_REGISTRY: list = []


def test_the_pipeline_runner_runs_a_pipeline_and_finds_its_versions(tmp_path, store, data):
    from conveyor.registry import Registry
    from conveyor.stores.backends import open_artifact_store, open_metadata_store, open_model_store
    from conveyor.tracking.tracker import Tracker

    url = f"sqlite:///{tmp_path / 'c.db'}"
    artifacts = open_artifact_store(str(tmp_path / "a"))
    tracker = Tracker(open_metadata_store(url), artifacts)
    registry = Registry(open_model_store(url), artifacts, tracker)
    _REGISTRY[:] = [registry]
    runner = PipelineRunner(lambda target: tiny, tracker, registry=registry)
    delivered = []
    agent = Agent(
        [data_trigger(data, attempts=2, backoff=0, params={"n": 2})],
        loop_store=store,
        run_pipeline=runner,
        on_new_version=lambda ref, t: delivered.append(ref),
    )
    [event] = agent.run_once()
    assert event.status == "succeeded", event.detail
    assert tracker.get_run(event.run_id).status is RunStatus.FINISHED
    assert event.detail["versions"] == ["tiny/1"] == delivered

    # a failing step: a failed run, retried, and no version registered
    (data / "m-02.parquet").write_bytes(b"x")
    failing = Agent(
        [data_trigger(data, attempts=2, backoff=0, params={"n": -1})],
        loop_store=store,
        run_pipeline=runner,
    )
    [failed] = failing.run_once()
    assert failed.status == "failed"
    assert failed.detail["error"].startswith("step 'count' failed: ValueError")
    assert tracker.get_run(failed.run_id).status is RunStatus.FAILED
    assert [v.version for v in registry.list_versions("tiny")] == [1]
    tracker.close()
