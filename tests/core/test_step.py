import pytest

from conveyor.core.graph import GraphBuilder, OutputRef
from conveyor.core.step import Step, step
from conveyor.errors import ValidationError


@step
def add(a: int, b: int = 1) -> int:
    return a + b


@step(retries=2, retry_delay=0.5, cache=False, allow_pickle=True, name="split_it")
def split(x: list[int]) -> tuple[list[int], list[int]]:
    return x[:1], x[1:]


def test_outside_a_pipeline_a_step_is_a_plain_call():
    assert add(1, 2) == 3
    assert split([1, 2, 3]) == ([1], [2, 3])
    assert add.__name__ == "add"
    assert add.__doc__ is None


def test_options_are_kept():
    assert isinstance(split, Step)
    assert (split.name, split.retries, split.retry_delay) == ("split_it", 2, 0.5)
    assert (split.cache, split.allow_pickle) == (False, True)
    assert add.cache is True
    assert add.allow_pickle is False


def test_outputs_from_the_return_annotation():
    assert add.output_names == ("output",)
    assert add.output_types == (int,)
    assert not add.multiple_outputs
    assert split.output_names == ("output_0", "output_1")
    assert split.multiple_outputs

    @step
    def nothing() -> None:
        return None

    @step
    def unannotated(x):
        return x

    @step
    def variadic_tuple() -> tuple[int, ...]:
        return (1, 2)

    assert nothing.output_names == ()
    assert unannotated.output_names == ("output",)
    assert variadic_tuple.output_names == ("output",)


def test_output_names_can_be_given():
    @step(outputs=["train", "test"])
    def cut(x: list[int]) -> tuple[list[int], list[int]]:
        return x, x

    assert cut.output_names == ("train", "test")
    with pytest.raises(ValidationError, match="2 distinct name"):
        step(outputs=["only_one"])(cut.fn)
    with pytest.raises(ValidationError, match="not an identifier"):
        step(outputs=["a b", "c"])(cut.fn)


def test_negative_retries_are_refused():
    with pytest.raises(ValidationError, match="retries"):
        step(retries=-1)(lambda: 1)


def test_code_hash_follows_the_source():
    def f(x: int) -> int:
        return x + 1

    def g(x: int) -> int:
        return x + 2

    assert step(f).code_hash == step(f).code_hash
    assert step(f).code_hash != step(g).code_hash
    assert len(step(f).code_hash) == 64


def test_code_hash_falls_back_to_bytecode_without_source():
    namespace: dict[str, object] = {}
    exec("def h(x):\n    return [y for y in range(x)]\n", namespace)  # no source file
    hashed = step(namespace["h"]).code_hash  # type: ignore[arg-type]
    exec("def h(x):\n    return [y for y in range(x)]\n", namespace)
    assert step(namespace["h"]).code_hash == hashed  # type: ignore[arg-type]
    exec("def h(x):\n    return [y * 2 for y in range(x)]\n", namespace)
    assert step(namespace["h"]).code_hash != hashed  # type: ignore[arg-type]


def test_inside_a_builder_a_call_returns_placeholders():
    with GraphBuilder() as builder:
        out = add(1)
        first, second = split([1, 2])
    assert isinstance(out, OutputRef)
    assert (out.node, out.output) == ("add", "output")
    assert (first.output, second.output) == ("output_0", "output_1")
    assert list(builder.graph.nodes) == ["add", "split_it"]
    assert add(2) == 3  # the builder is gone again
