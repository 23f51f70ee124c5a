"""Tests of conveyor.core.registry (named apart from tests/registry/test_registry.py)."""

import pytest

from conveyor.core.registry import (
    ColumnSpec,
    Environment,
    ModelRef,
    Signature,
    check_alias,
    check_model_name,
)
from conveyor.errors import ValidationError


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("flights", ModelRef("flights")),
        ("flights/3", ModelRef("flights", version=3)),
        ("flights@production", ModelRef("flights", alias="production")),
        ("flights@latest", ModelRef("flights")),
        ("churn.v2-eu_1", ModelRef("churn.v2-eu_1")),
    ],
)
def test_references_parse(text, ref):
    assert ModelRef.parse(text) == ref
    assert str(ref) == text.removesuffix("@latest")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("flights/0", "model reference"),
        ("flights/x", "model reference"),
        ("flights@Prod", "alias"),
        ("", "model name"),
        ("../etc", "model name"),
        ("a b", "model name"),
        ("@production", "model name"),
    ],
)
def test_bad_references_name_the_rule(text, field):
    with pytest.raises(ValidationError) as info:
        ModelRef.parse(text)
    assert info.value.field == field


def test_names_and_aliases():
    assert check_model_name("x" * 128) == "x" * 128
    with pytest.raises(ValidationError):
        check_model_name("x" * 129)
    assert check_alias("challenger") == "challenger"
    for bad in ("latest", "Staging", "9a", "a" * 64, 3):
        with pytest.raises(ValidationError, match="alias"):
            check_alias(bad)


def test_signatures_and_environments_round_trip_through_dicts():
    frame = Signature(
        "dataframe",
        (ColumnSpec("a", "int64"), ColumnSpec("b", "category", True, ("x", "y"), ordered=True)),
    )
    tensor = Signature("tensor", dtype="float32", shape=(None, 3, 2))
    env = Environment("3.11.7", {"numpy": "2.0.0", "lightgbm": "4.5.0"})
    assert Signature.from_dict(frame.to_dict()) == frame
    assert Signature.from_dict(tensor.to_dict()) == tensor
    assert Environment.from_dict(env.to_dict()) == env
    assert list(env.to_dict()["packages"]) == ["lightgbm", "numpy"]
