import time
import zipfile

import numpy as np
import pandas as pd
import pytest

import conveyor.lifecycle.datasets as datasets
from conveyor.errors import ValidationError
from conveyor.lifecycle.datasets import (
    FEATURES,
    LABEL,
    WEATHER,
    data_folder,
    flights_months,
    load_flights,
)


@pytest.fixture(scope="module")
def january_february() -> pd.DataFrame:
    return load_flights()


def raw_flights() -> pd.DataFrame:
    """The flights CSV read plainly with pandas, as a reference for the loader."""
    with (
        zipfile.ZipFile(data_folder() / "flights.csv.zip") as archive,
        archive.open("flights.csv") as handle,
    ):
        return pd.read_csv(handle, usecols=["month", "day", "arr_delay", "tailnum", "origin"])


def test_january_and_february_load_in_well_under_five_seconds():
    datasets._flights.cache_clear()
    started = time.perf_counter()
    frame = load_flights(months=(1, 2))
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"{elapsed:.2f} s"  # about 0.5 s here, cold; a loose guard
    assert len(frame) > 50_000


def test_the_columns_are_features_known_before_departure(january_february):
    assert list(january_february.columns) == [*FEATURES, LABEL, "time_hour"]
    assert "dep_delay" not in january_february.columns
    assert "arr_delay" not in january_february.columns
    dtypes = january_february.dtypes
    assert dtypes["late"] == np.dtype(bool)
    assert str(dtypes["time_hour"]).startswith("datetime64")
    assert dtypes["sched_hour"] == np.int64
    assert dtypes["weekday"] == np.int64


def test_cancelled_flights_are_left_out_and_late_is_arr_delay_over_15(january_february):
    raw = raw_flights()
    flown = raw[raw["month"].isin([1, 2]) & raw["arr_delay"].notna()]
    assert len(january_february) == len(flown)
    assert january_february["late"].sum() == (flown["arr_delay"] > 15).sum()
    assert set(january_february["month"]) == {1, 2}


def test_derived_columns(january_february):
    first = january_february.iloc[0]  # UA 1545, 2013-01-01 05:15 from EWR, plane built 1999
    assert (first["carrier"], first["origin"], first["dest"]) == ("UA", "EWR", "IAH")
    assert first["sched_hour"] == 5
    assert first["weekday"] == 1
    assert first["plane_age"] == 2013 - 1999
    assert first["time_hour"] == pd.Timestamp("2013-01-01 10:00", tz="UTC")
    assert january_february["weekday"].between(0, 6).all()
    assert january_february["sched_hour"].between(0, 23).all()


def test_the_origins_weather_at_the_scheduled_hour_is_joined(january_february):
    first = january_february.iloc[0]
    # weather.csv, EWR 2013-01-01 hour 5: temp 39.02, humid 64.43, pressure 1011.9
    assert first["temp"] == pytest.approx(39.02)
    assert first["humid"] == pytest.approx(64.43)
    assert first["pressure"] == pytest.approx(1011.9)
    assert january_february["temp"].notna().mean() > 0.99


def test_weather_can_be_left_out():
    frame = load_flights([3], with_weather=False)
    assert not set(WEATHER) & set(frame.columns)
    assert set(frame["month"]) == {3}


def test_months_available_and_unknown_ones():
    assert flights_months() == list(range(1, 13))
    with pytest.raises(ValidationError, match=r"must be among \[1, 2, .*got \[13\]") as info:
        load_flights([13])
    assert info.value.field == "months"
    with pytest.raises(ValidationError):
        load_flights([])
