import pytest

from conveyor.core.graph import Const, Graph, GraphBuilder, Node, OutputRef
from conveyor.core.step import step
from conveyor.errors import PipelineDefinitionError, ValidationError


@step
def load(path: str) -> list[int]:
    return [1, 2, 3]


@step
def total(xs: list[int], scale: float = 1.0) -> float:
    return sum(xs) * scale


@step
def shout(text: str) -> str:
    return text.upper()


@step
def pair() -> tuple[int, str]:
    return 1, "a"


def build(fn):
    with GraphBuilder() as builder:
        fn()
    builder.graph.validate()
    return builder.graph


def test_edges_literals_and_defaults():
    graph = build(lambda: total(load("x.csv"), scale=2))
    node = graph["total"]
    assert node.upstream == {"load"}
    assert node.literals == {"scale": 2}
    assert node.refs["xs"] == OutputRef("load", "output", node.refs["xs"].build_id)
    assert graph["load"].inputs == {"path": Const("x.csv")}
    assert graph.terminal() == ["total"]
    assert graph.downstream("load") == {"total"}
    assert build(lambda: total(load("x"))).nodes["total"].literals == {"scale": 1.0}


def test_repeated_calls_get_numbered_names():
    def define():
        xs = load("a")
        total(xs)
        total(xs, scale=3.0)
        total(load("b"))

    graph = build(define)
    assert list(graph.nodes) == ["load", "total", "total_2", "load_2", "total_3"]
    assert graph.terminal() == ["total", "total_2", "total_3"]


def test_topological_order_puts_upstream_first():
    def define():
        a = load("a")
        b = load("b")
        total(a)
        total(b)

    order = build(define).topological_order()
    assert order.index("load") < order.index("total")
    assert order.index("load_2") < order.index("total_2")


def test_cycle_is_refused_naming_a_step():
    graph = build(lambda: total(load("x")))
    nodes = dict(graph.nodes)
    ref_total = OutputRef("total", "output", 0)
    nodes["load"] = Node("load", load, {"path": ref_total})
    with pytest.raises(PipelineDefinitionError, match="cycle") as info:
        Graph(nodes).topological_order()
    assert info.value.step in {"load", "total"}


def test_unknown_upstream_and_output_are_refused():
    with pytest.raises(PipelineDefinitionError, match="not defined"):
        Graph({"total": Node("total", total, {"xs": OutputRef("ghost", "output", 0)})}).validate()
    graph = build(lambda: load("x"))
    graph.nodes["total"] = Node("total", total, {"xs": OutputRef("load", "nope", 0)})
    with pytest.raises(PipelineDefinitionError, match="no output 'nope'"):
        graph.validate()


def test_wrong_literal_type_names_step_and_argument():
    with pytest.raises(PipelineDefinitionError) as info:
        build(lambda: load(3))
    assert (info.value.step, info.value.argument) == ("load", "path")
    assert "expects str, got int 3" in str(info.value)
    assert isinstance(info.value, ValidationError)


def test_mismatched_upstream_annotation_names_both_steps():
    with pytest.raises(PipelineDefinitionError) as info:
        build(lambda: shout(load("x")))
    assert (info.value.step, info.value.argument) == ("shout", "text")
    assert "step 'load' output 'output' is annotated list[int]" in str(info.value)


def test_missing_and_unknown_arguments():
    with pytest.raises(PipelineDefinitionError, match="required and missing") as info:
        build(lambda: total())
    assert (info.value.step, info.value.argument) == ("total", "xs")
    with pytest.raises(PipelineDefinitionError, match="not a parameter") as info:
        build(lambda: total(load("x"), bogus=1))
    assert info.value.argument == "bogus"
    with pytest.raises(PipelineDefinitionError, match="takes 2 argument"):
        build(lambda: total(load("x"), 1.0, 2))


def test_placeholder_from_another_definition_is_used_before_it_exists():
    with GraphBuilder():
        stale = load("x")
    with pytest.raises(PipelineDefinitionError, match="before it exists") as info:
        build(lambda: total(stale))
    assert (info.value.step, info.value.argument) == ("total", "xs")


def test_placeholders_cannot_hide_in_containers_or_be_tested():
    with pytest.raises(PipelineDefinitionError, match="inside a container"):
        build(lambda: total([load("x")]))  # type: ignore[list-item]

    def branch_on_output():
        if load("x"):
            pass

    with pytest.raises(PipelineDefinitionError, match="no value while the pipeline"):
        build(branch_on_output)

    def unpack_single():
        _a, _b = load("x")

    with pytest.raises(PipelineDefinitionError, match="cannot be unpacked"):
        build(unpack_single)


def test_multiple_outputs_unpack():
    def define():
        number, _text = pair()
        total([number])  # type: ignore[list-item]

    with pytest.raises(PipelineDefinitionError, match="inside a container"):
        build(define)

    def good():
        _, text = pair()
        shout(text)

    graph = build(good)
    assert graph["shout"].refs["text"].output == "output_1"


def test_variadic_steps_are_refused_in_pipelines():
    @step
    def many(*xs: int) -> int:
        return sum(xs)

    assert many(1, 2) == 3
    with pytest.raises(PipelineDefinitionError, match=r"\*args"):
        build(lambda: many(1))
