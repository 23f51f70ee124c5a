from conveyor.core.entities import RunStatus
from conveyor.core.graph import GraphBuilder
from conveyor.core.step import step
from conveyor.runtime.cache import CacheIndex
from conveyor.runtime.task import StepContext, run_step


class Opaque:
    pass


@step
def describe(thing: object, n: int = 1) -> str:
    return f"{type(thing).__name__} x{n}"


@step
def pair(n: int) -> tuple[int, int]:
    return n, n + 1


def context(tracker, parent_id, cache=True):
    return StepContext(
        tracker, "p", "e", parent_id, cache, CacheIndex(tracker.runs, tracker.artifacts)
    )


def node_of(call):
    with GraphBuilder() as builder:
        call()
    return next(iter(builder.graph.nodes.values()))


def test_a_literal_without_stable_text_runs_uncached(tracker):
    parent = tracker.start_run("e")
    node = node_of(lambda: describe(Opaque(), n=2))
    ctx = context(tracker, parent.id)
    first = run_step(ctx, node, {})
    second = run_step(ctx, node, {})
    parent.end()
    assert first.output == second.output == "Opaque x2"
    assert not second.cached
    run = tracker.get_run(first.run_id)
    assert "conveyor.cache_key" not in run.tags
    assert run.params["thing"].startswith("<")
    assert run.params["n"] == "2"


def test_multiple_outputs_and_wrong_shapes(tracker):
    parent = tracker.start_run("e")
    result = run_step(context(tracker, parent.id), node_of(lambda: pair(3)), {})
    assert result.output == (3, 4)
    assert result.outputs == {"output_0": 3, "output_1": 4}

    @step
    def liar(n: int) -> tuple[int, int]:
        return n  # type: ignore[return-value]

    bad = run_step(context(tracker, parent.id), node_of(lambda: liar(3)), {})
    parent.end()
    assert bad.status is RunStatus.FAILED
    assert "must return a tuple of 2 outputs, got int" in str(bad.error)
