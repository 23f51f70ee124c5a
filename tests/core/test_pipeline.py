from pathlib import Path

import pytest

from conveyor.core.pipeline import Pipeline, parse_text, pipeline
from conveyor.core.step import step
from conveyor.errors import PipelineDefinitionError


@step
def load(path: str) -> list[float]:
    return [1.0, 2.0]


@step
def fit(xs: list[float], max_depth: int = 6) -> dict[str, int]:
    return {"depth": max_depth}


@pipeline
def training(path: str = "data/flights.parquet", max_depth: int = 6):
    xs = load(path)
    fit(xs, max_depth=max_depth)


def test_build_traces_with_parameter_values():
    graph = training.build({"max_depth": 8})
    assert list(graph.nodes) == ["load", "fit"]
    assert graph["fit"].literals == {"max_depth": 8}
    assert graph["load"].literals == {"path": "data/flights.parquet"}


def test_calling_a_pipeline_runs_it_as_plain_code():
    assert training() is None
    assert isinstance(training, Pipeline)
    assert training.name == "training"
    assert pipeline(name="other")(training.fn).name == "other"


def test_unknown_parameter_is_refused_listing_the_known_ones():
    with pytest.raises(PipelineDefinitionError, match="it has: path, max_depth") as info:
        training.build({"max_dept": 8})
    assert info.value.argument == "max_dept"


def test_wrong_parameter_type_is_refused():
    with pytest.raises(PipelineDefinitionError, match="expects int, got str") as info:
        training.build({"max_depth": "8"})
    assert info.value.argument == "max_depth"


def test_missing_required_parameter():
    @pipeline
    def needs(path: str):
        load(path)

    with pytest.raises(PipelineDefinitionError, match="needs a value"):
        needs.build()
    assert needs.resolve_params({"path": "x"}) == {"path": "x"}


def test_a_pipeline_without_steps_is_refused():
    @pipeline
    def empty():
        return None

    with pytest.raises(PipelineDefinitionError, match="calls no step"):
        empty.build()


def test_variadic_pipelines_are_refused():
    with pytest.raises(PipelineDefinitionError, match="must be named"):
        pipeline(lambda *a: None)


def test_parse_params_by_annotation():
    @pipeline
    def typed(
        n: int = 1,
        rate: float = 0.1,
        flag: bool = False,
        path: Path = Path("x"),
        tags: list = [],  # noqa: B006
        opts: dict | None = None,
        name: str = "a",
        guess=3,
    ):
        load(name)

    parsed = typed.parse_params(
        {
            "n": "8",
            "rate": "0.5",
            "flag": "yes",
            "path": "data/f.parquet",
            "tags": '["a", "b"]',
            "opts": "none",
            "name": "8",
            "guess": "5",
        }
    )
    assert parsed == {
        "n": 8,
        "rate": 0.5,
        "flag": True,
        "path": Path("data/f.parquet"),
        "tags": ["a", "b"],
        "opts": None,
        "name": "8",
        "guess": 5,
    }
    assert typed.parse_params({"opts": '{"k": 1}'}) == {"opts": {"k": 1}}
    with pytest.raises(PipelineDefinitionError, match="cannot read 'x' as int") as info:
        typed.parse_params({"n": "x"})
    assert info.value.argument == "n"
    with pytest.raises(PipelineDefinitionError, match="no such parameter"):
        typed.parse_params({"nope": "1"})


@pytest.mark.parametrize(
    ("text", "annotation", "value"),
    [("on", bool, True), ("0", bool, False), ("null", int | None, None), ("abc", object, "abc")],
)
def test_parse_text(text, annotation, value):
    assert parse_text(text, annotation) == value


def test_parse_text_rejects():
    with pytest.raises(ValueError, match="true/false"):
        parse_text("maybe", bool)
    with pytest.raises(ValueError, match="JSON list"):
        parse_text('{"a": 1}', list)
