import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import NotFoundError, ValidationError
from conveyor.runtime import serializers as s


def roundtrip(value, **kw):
    ser = s.serializer_for(value, **kw)
    assert ser is not None, type(value)
    return ser, ser.load(ser.dump(value))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(json_values)
def test_json_round_trip(value):
    ser, back = roundtrip(value)
    assert ser.name == "json"
    assert back == value
    assert type(back) is type(value)


def test_json_keeps_nan_and_refuses_what_would_change():
    _, back = roundtrip(math.nan)
    assert math.isnan(back)
    assert s.serializer_for((1, 2)) is None  # a tuple would come back as a list
    assert s.serializer_for({1: "a"}) is None  # an int key would come back as a string
    assert s.serializer_for([object()]) is None
    assert s.is_jsonable({"a": [1, {"b": None}]})


def test_pandas_parquet_round_trip_keeps_index_and_dtypes():
    df = pd.DataFrame(
        {"x": [1.5, 2.5, None], "n": [1, 2, 3], "s": ["a", "b", "a"]}, index=[10, 20, 30]
    )
    ser, back = roundtrip(df)
    assert ser.name == "pandas.parquet"
    assert ser.suffix == ".parquet"
    pd.testing.assert_frame_equal(back, df)


def test_arrow_and_polars_round_trip():
    import polars as pl
    import pyarrow as pa

    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    ser, back = roundtrip(table)
    assert ser.name == "arrow.parquet"
    assert back.equals(table)
    frame = pl.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    ser, back = roundtrip(frame)
    assert ser.name == "polars.parquet"
    assert back.equals(frame)


def test_numpy_round_trip_never_pickles():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    ser, back = roundtrip(array)
    assert ser.name == "numpy.npy"
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.float32
    _, scalar = roundtrip(np.int64(7))
    assert scalar == 7
    assert isinstance(scalar, np.int64)
    with pytest.raises(ValueError, match="allow_pickle"):
        s.NUMPY.dump(np.array([object()], dtype=object))


def test_matplotlib_figure_as_png_and_svg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([1, 2, 3])
    ser = s.serializer_for(figure)
    assert ser is not None
    assert ser.name == "matplotlib.png"
    assert ser.dump(figure).startswith(b"\x89PNG")
    assert b"<svg" in s.FIGURE_SVG.dump(figure)
    plt.close(figure)


@dataclass
class Point:
    x: int
    y: int


POINT = s.Serializer(
    "test.point",
    ".txt",
    "text/plain",
    lambda p: f"{p.x},{p.y}".encode(),
    lambda b: Point(*map(int, b.decode().split(","))),
)


def test_unsupported_type_needs_an_explicit_choice():
    point = Point(1, 2)
    assert s.serializer_for(point) is None
    assert s.serializer_for_type(Point) is None
    err = s.unsupported_output("fit", "output", Point)
    assert isinstance(err, ValidationError)
    text = str(err)
    for part in ("step 'fit' output 'output'", "test_serializers.Point", "pandas.DataFrame"):
        assert part in text
    assert "allow_pickle=True" in text
    assert s.serializer_for(point, allow_pickle=True) is s.PICKLE
    assert s.serializer_for(point, {Point: POINT}) is POINT
    assert s.serializer_for_type(Point, {Point: POINT}) is POINT


def test_register_serializer_by_type_and_by_name(monkeypatch):
    monkeypatch.setattr(s, "_registered", [])
    s.register_serializer(Point, POINT)
    _, back = roundtrip(Point(3, 4))
    assert back == Point(3, 4)
    assert s.get_serializer("test.point") is POINT
    s.register_serializer("io:BytesIO", POINT)
    assert s.serializer_for(io.BytesIO()) is POINT
    assert s.serializer_for_type(io.BytesIO) is POINT
    with pytest.raises(ValidationError, match="module:Class"):
        s.register_serializer("BytesIO", POINT)


def test_library_types_match_only_once_imported(monkeypatch):
    monkeypatch.setattr(s, "_registered", [])
    s.register_serializer("not_a_module_anyone_has:Thing", POINT)
    assert s.serializer_for(Point(1, 1)) is None


def test_unknown_serializer_name():
    with pytest.raises(NotFoundError, match="no serializer named 'nope'"):
        s.get_serializer("nope")


def test_hostile_pickle_is_only_read_when_asked():
    # The registry never picks pickle by itself, and reading one goes through the
    # runner's opt-in check (see test_values); here the serializer is explicit.
    assert s.serializer_for(Point(1, 2)) is None
    assert s.PICKLE.load(s.PICKLE.dump(Point(1, 2))) == Point(1, 2)
