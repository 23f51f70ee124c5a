from pathlib import Path
from typing import Any, Literal, Optional, Protocol, TypeVar

import pytest

from conveyor.core.typecheck import annotation_fits, describe, resolve_hints, value_fits

T = TypeVar("T")


class Proto(Protocol):
    def f(self) -> int: ...


@pytest.mark.parametrize(
    ("value", "annotation", "fits"),
    [
        (1, int, True),
        (True, int, False),
        (1.5, int, False),
        (1, float, True),
        (True, float, False),
        (True, bool, True),
        (1, bool, False),
        ("x", str, True),
        (1, str, False),
        ("data/x.parquet", Path, True),
        (Path("x"), Path, True),
        (3, Path, False),
        ([1, 2], list, True),
        ([1, 2], list[int], True),
        ([1, "a"], list[int], False),
        ((1, 2), list, False),
        ({"a": 1}, dict[str, int], True),
        ({1: 1}, dict[str, int], False),
        ([], dict, False),
        (None, Optional[int], True),  # noqa: UP045 - the spelling under test
        (None, int | None, True),
        (1, int | None, True),
        ("x", int | None, False),
        ("a", Literal["a", "b"], True),
        ("c", Literal["a", "b"], False),
        (object(), Any, True),
        (1, T, True),
        (1, Proto, True),
        (1, "SomeUnresolvedName", True),
    ],
)
def test_value_fits(value, annotation, fits):
    assert value_fits(value, annotation) is fits


@pytest.mark.parametrize(
    ("produced", "expected", "fits"),
    [
        (int, int, True),
        (int, float, True),
        (float, int, False),
        (str, Path, True),
        (int, str, False),
        (bool, int, True),
        (int, int | None, True),
        (int | None, int, False),
        (list[int], list, True),
        (list[int], dict, False),
        (Any, int, True),
        (int, Any, True),
        (None, int | None, True),
        (Literal[1], int, True),
    ],
)
def test_annotation_fits(produced, expected, fits):
    assert annotation_fits(produced, expected) is fits


def test_describe():
    assert describe(int) == "int"
    assert describe(list[int]) == "list[int]"
    assert "int" in describe(int | None)


def test_resolve_hints_skips_what_cannot_be_evaluated():
    def f(a: int, b: "Missing", c: "list[int]") -> "int":  # type: ignore[name-defined]  # noqa: F821
        return a

    hints = resolve_hints(f)
    assert hints == {"a": int, "c": list[int], "return": int}
