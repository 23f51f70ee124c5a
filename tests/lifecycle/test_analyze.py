import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine

from conveyor.errors import ValidationError
from conveyor.lifecycle import Dataset, Schema, analyze, check
from conveyor.profiling import Profile


def mixed() -> pd.DataFrame:
    rows = 120
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "count": rng.integers(0, 100, rows),
            "price": np.where(np.arange(rows) % 10 == 0, np.nan, rng.normal(50, 5, rows)),
            "flag": rng.random(rows) > 0.5,
            "colour": rng.choice(["red", "green", "blue"], rows),
            "id": [f"user-{i}" for i in range(rows)],
            "grade": pd.Categorical(rng.choice(["A", "B"], rows)),
            "seen": pd.date_range("2024-01-01", periods=rows, freq="h"),
            "maybe": pd.array([1, None] * (rows // 2), dtype="Int64"),
        }
    )


def test_every_type_is_inferred():
    profile, schema = analyze(mixed())
    assert isinstance(profile, Profile)
    assert profile.rows == 120
    types = {name: column.type for name, column in schema.columns.items()}
    assert types == {
        "count": "int",
        "price": "float",
        "flag": "bool",
        "colour": "category",
        "id": "string",  # 120 distinct values, above max_categories
        "grade": "category",
        "seen": "datetime",
        "maybe": "int",
    }


def test_nulls_make_a_column_optional_with_its_rate():
    _, schema = analyze(mixed())
    assert schema["count"].required
    assert schema["count"].null_rate == 0.0
    assert not schema["price"].required
    assert schema["price"].null_rate == 0.1
    assert not schema["maybe"].required
    assert schema["maybe"].null_rate == 0.5


def test_ranges_and_categories_are_what_was_seen():
    df = mixed()
    _, schema = analyze(df)
    assert (schema["count"].min, schema["count"].max) == (df["count"].min(), df["count"].max())
    assert (schema["price"].min, schema["price"].max) == (df["price"].min(), df["price"].max())
    assert schema["colour"].categories == ["blue", "green", "red"]
    assert schema["grade"].categories == ["A", "B"]
    assert schema["id"].categories is None
    assert schema["seen"].min is None
    assert schema["flag"].min is None


def test_range_slack_widens_ranges_and_keeps_ints_whole():
    df = pd.DataFrame({"n": [0, 10], "x": [1.0, 2.0]})
    _, schema = analyze(df, range_slack=0.25)
    assert (schema["n"].min, schema["n"].max) == (-3, 13)  # 2.5 outwards, rounded out
    assert (schema["x"].min, schema["x"].max) == (0.75, 2.25)


def test_max_categories_decides_category_or_string():
    df = pd.DataFrame({"c": list("abcdef")})
    assert analyze(df, max_categories=6)[1]["c"].type == "category"
    assert analyze(df, max_categories=5)[1]["c"].type == "string"


def test_a_rare_null_keeps_a_rate_above_zero():
    values = np.arange(100_000, dtype=float)
    values[7] = np.nan
    column = analyze(pd.DataFrame({"v": values}))[1]["v"]
    assert not column.required
    assert column.null_rate == 0.0001


def test_a_real_dataset_meets_its_own_schema():
    wine = load_wine(as_frame=True).frame
    profile, schema = analyze(Dataset.of(wine, "sklearn wine"))
    assert set(schema.columns) == set(wine.columns)
    assert schema["target"].type == "int"
    assert (schema["target"].min, schema["target"].max) == (0, 2)
    assert schema["alcohol"].type == "float"
    assert profile["alcohol"].moments.maximum == wine["alcohol"].max()
    assert check(wine, schema).anomalies == []


def test_an_inferred_schema_survives_yaml(tmp_path):
    _, schema = analyze(mixed())
    schema.save(tmp_path / "s.yaml")
    assert Schema.load(tmp_path / "s.yaml") == schema
    assert check(mixed(), Schema.load(tmp_path / "s.yaml")).anomalies == []


def test_bad_arguments_are_named():
    for kwargs, field in [
        ({"max_categories": -1}, "max_categories"),
        ({"range_slack": -0.1}, "range_slack"),
        ({"null_rate_tolerance": 2}, "null_rate_tolerance"),
    ]:
        with pytest.raises(ValidationError) as info:
            analyze(mixed(), **kwargs)
        assert info.value.field == field
    with pytest.raises(ValidationError, match="repeated: \\['a'\\]"):
        analyze(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(ValidationError, match="must be a Dataset"):
        analyze({"a": [1]})
