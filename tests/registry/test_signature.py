import numpy as np
import pandas as pd
import polars as pl
import pytest

from conveyor.core.registry import ColumnSpec, Signature
from conveyor.errors import ValidationError
from conveyor.registry.signature import (
    decode_output,
    encode_output,
    example_from_parquet,
    example_to_parquet,
    infer_signature,
    outputs_match,
    prepare_input,
)


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "age": np.array([31, 45, 27], dtype="int64"),
            "fare": [7.25, None, 8.05],
            "port": pd.Series(["S", "C", "S"], dtype=object),
            "cabin": pd.Categorical(["A", "B", "A"], categories=["A", "B", "C"]),
            "vip": [True, False, False],
        }
    )


def test_a_frame_signature_has_dtypes_nulls_and_categories(frame):
    sig = infer_signature(frame)
    assert sig.kind == "dataframe"
    by_name = {c.name: c for c in sig.columns}
    assert [c.name for c in sig.columns] == ["age", "fare", "port", "cabin", "vip"]
    assert by_name["age"] == ColumnSpec("age", "int64")
    assert by_name["fare"] == ColumnSpec("fare", "float64", nullable=True)
    assert by_name["port"] == ColumnSpec("port", "string", categories=("C", "S"))
    assert by_name["cabin"] == ColumnSpec("cabin", "category", categories=("A", "B", "C"))
    assert by_name["vip"].dtype == "bool"
    assert Signature.from_dict(sig.to_dict()) == sig


def test_many_distinct_strings_record_no_categories():
    sig = infer_signature(pd.DataFrame({"id": [f"user{i}" for i in range(50)]}))
    assert sig.columns[0].categories is None


def test_an_array_signature_has_dtype_and_shape():
    sig = infer_signature(np.zeros((5, 3), dtype=np.float32))
    assert (sig.kind, sig.dtype, sig.shape) == ("tensor", "float32", (None, 3))
    assert Signature.from_dict(sig.to_dict()) == sig


@pytest.mark.parametrize("bad", [pd.DataFrame(), np.zeros((0, 3)), pd.DataFrame({0: [1]})])
def test_unusable_examples_are_refused(bad):
    with pytest.raises(ValidationError, match="input_example"):
        infer_signature(bad)


def test_missing_column_names_the_column_and_rule(frame):
    sig = infer_signature(frame)
    with pytest.raises(ValidationError, match=r"column 'fare': is required .*float64") as info:
        prepare_input(sig, frame.drop(columns=["fare"]))
    assert info.value.field == "column 'fare'"


def test_wrong_dtype_names_the_column_and_rule(frame):
    sig = infer_signature(frame)
    bad = frame.assign(age=[31.5, 45.0, 27.0])
    with pytest.raises(ValidationError, match=r"column 'age': must be integers.*float64"):
        prepare_input(sig, bad)
    with pytest.raises(ValidationError, match="column 'fare': must be numbers"):
        prepare_input(sig, frame.assign(fare=["a", "b", "c"]))


def test_extra_columns_are_dropped_and_the_order_fixed(frame):
    sig = infer_signature(frame)
    shuffled = frame[["vip", "cabin", "port", "fare", "age"]].assign(extra=1)
    got = prepare_input(sig, shuffled)
    assert list(got.columns) == ["age", "fare", "port", "cabin", "vip"]
    pd.testing.assert_frame_equal(got, frame)


def test_compatible_dtypes_are_cast(frame):
    sig = infer_signature(frame)
    narrow = frame.assign(age=frame["age"].astype("int32"), fare=[7, 8, 9])
    got = prepare_input(sig, narrow)
    assert (got["age"].dtype, got["fare"].dtype) == (np.dtype("int64"), np.dtype("float64"))


def test_strings_become_the_trained_categories_and_unknown_ones_are_refused(frame):
    sig = infer_signature(frame)
    got = prepare_input(sig, frame.assign(cabin=["C", "A", "B"]))
    assert list(got["cabin"].cat.categories) == ["A", "B", "C"]
    with pytest.raises(ValidationError, match=r"column 'cabin': must be one of .*'Z'"):
        prepare_input(sig, frame.assign(cabin=["Z", "A", "B"]))


def test_nulls_in_an_integer_column_are_refused(frame):
    sig = infer_signature(frame)
    with pytest.raises(ValidationError, match="column 'age': cannot be read as int64"):
        prepare_input(sig, frame.assign(age=pd.array([1, None, 3], dtype="Int64")))


def test_other_inputs_are_converted(frame):
    sig = infer_signature(frame[["age", "fare"]])
    from_polars = prepare_input(sig, pl.DataFrame({"age": [1, 2], "fare": [0.5, 1.5]}))
    from_records = prepare_input(sig, [{"age": 1, "fare": 0.5}])
    assert list(from_polars.columns) == ["age", "fare"]
    assert from_records["fare"].tolist() == [0.5]
    with pytest.raises(ValidationError, match="column 'age': must be integers"):
        prepare_input(sig, np.array([[1, 0.5]]))  # one float array: age arrives as float
    floats = infer_signature(frame[["fare"]].fillna(0.0))
    assert prepare_input(floats, np.array([[1.5]]))["fare"].tolist() == [1.5]
    with pytest.raises(ValidationError, match="columns age, fare; got an array of shape"):
        prepare_input(sig, np.zeros((2, 3)))
    with pytest.raises(ValidationError, match="must be a pandas DataFrame or a numpy array"):
        prepare_input(sig, "age=1")


def test_arrays_are_checked_for_shape_and_kind():
    sig = infer_signature(np.zeros((5, 3)))
    assert prepare_input(sig, np.ones((2, 3), dtype=np.int32)).dtype == np.float64
    with pytest.raises(ValidationError, match=r"shape \(rows, 3\), got \(2, 4\)"):
        prepare_input(sig, np.ones((2, 4)))
    with pytest.raises(ValidationError, match="must hold numbers"):
        prepare_input(sig, np.array([["a", "b", "c"]]))
    assert prepare_input(sig, pd.DataFrame(np.ones((2, 3)))).shape == (2, 3)


@pytest.mark.parametrize(
    "example",
    [
        pd.DataFrame({"a": [1, 2], "b": ["x", None], "c": pd.Categorical(["u", "v"])}),
        np.arange(6, dtype=np.float32).reshape(3, 2),
        np.arange(12, dtype=np.int64).reshape(2, 3, 2),
        np.arange(4.0),
    ],
)
def test_examples_survive_parquet(example):
    sig = infer_signature(example)
    data = example_to_parquet(example)
    assert data == example_to_parquet(example)  # same bytes, same fingerprint
    back = example_from_parquet(data, sig)
    if isinstance(example, np.ndarray):
        np.testing.assert_array_equal(back, example)
        assert back.dtype == example.dtype
    else:
        pd.testing.assert_frame_equal(back, example, check_dtype=False)
        assert infer_signature(back) == sig


@pytest.mark.parametrize(
    ("output", "suffix"),
    [
        (np.array([0, 1, 1]), ".npy"),
        (np.array([0.5, np.nan]), ".npy"),
        (np.array(["yes", "no"]), ".npy"),
        (np.array(["yes", None], dtype=object), ".json"),
        (pd.Series([1.0, 2.0]), ".npy"),
    ],
)
def test_expected_outputs_round_trip_without_pickle(output, suffix):
    name, data = encode_output(output)
    assert name.endswith(suffix)
    assert outputs_match(output, decode_output(name, data))


def test_outputs_match_within_float_tolerance():
    assert outputs_match(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]))
    assert not outputs_match(np.array([1.0, 2.0]), np.array([1.0, 2.1]))
    assert not outputs_match(np.array([1.0]), np.array([1.0, 2.0]))
    assert not outputs_match(np.array(["a"]), np.array(["b"]))


def test_a_float_column_of_only_nulls_reads_as_missing_numbers(frame):
    """JSON has no NaN: a float column whose values are all missing arrives as nulls."""
    sig = infer_signature(frame)
    got = prepare_input(sig, frame.assign(fare=pd.Series([None, None, None], dtype=object)))
    assert str(got["fare"].dtype) == "float64"
    assert got["fare"].isna().all()
    with pytest.raises(ValidationError, match="column 'fare': must be numbers"):
        prepare_input(sig, frame.assign(fare=pd.Series(["a", None, None], dtype=object)))
